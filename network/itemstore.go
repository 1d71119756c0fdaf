package network

import (
	"sync"

	"github.com/anacrolix/dht/v2/bep44"
)

// itemStore is a bounded bep44.Store: the library's in-memory store grows
// without limit, and anyone may put items. When full, the item stored
// longest ago is evicted. Expiry and the seq rules are applied by the
// bep44.Wrapper the server puts in front of it.
type itemStore struct {
	max int

	mu    sync.Mutex
	items map[bep44.Target]*storedItem
	tick  uint64
}

type storedItem struct {
	item *bep44.Item
	tick uint64 // insertion order
}

var _ bep44.Store = (*itemStore)(nil)

func newItemStore(max int) *itemStore {
	return &itemStore{max: max, items: make(map[bep44.Target]*storedItem)}
}

func (s *itemStore) Put(i *bep44.Item) error {
	t := i.Target()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.items[t]; !ok && len(s.items) >= s.max {
		var oldest bep44.Target
		var ot uint64
		first := true
		for k, si := range s.items {
			if first || si.tick < ot {
				oldest, ot, first = k, si.tick, false
			}
		}
		delete(s.items, oldest)
	}
	s.tick++
	s.items[t] = &storedItem{item: i, tick: s.tick}
	return nil
}

func (s *itemStore) Get(t bep44.Target) (*bep44.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	si, ok := s.items[t]
	if !ok {
		return nil, bep44.ErrItemNotFound
	}
	return si.item, nil
}

func (s *itemStore) Del(t bep44.Target) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.items, t)
	return nil
}

func (s *itemStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

package network

import (
	"testing"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
)

// FuzzGuard: whatever arrives, the guard does not panic, and what it lets
// through decodes without panicking (the server decodes it again).
func FuzzGuard(f *testing.F) {
	for _, s := range []string{
		"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
		"d1:rd2:id20:abcdefghij01234567895:nodes26:abcdefghij0123456789\x7f\x00\x00\x01\x1a\xe1e1:t2:aa1:y1:re",
		"d1:rd2:id20:abcdefghij01234567896:valuesl6:\x7f\x00\x00\x01\x1a\xe1ee1:t2:aa1:y1:re",
		"d2:ip0:1:t2:aa1:y1:re",
		"d1:rd2:id20:abcdefghij01234567896:valuesl1:xee1:t2:aa1:y1:re",
		"d1:eli201e5:errore1:t2:aa1:y1:ee",
		"d1:q4:ping1:t2:aa1:y1:q",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !decodesSafely(b) {
			return
		}
		if len(b) < 2 || b[0] != 'd' {
			return
		}
		var m krpc.Msg
		_ = bencode.Unmarshal(b, &m) // must not panic
	})
}

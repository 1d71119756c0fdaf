package network

import (
	"bytes"
	"net/netip"
	"strconv"
)

// The DHT server decodes every packet it reads (reflection, allocations),
// and before this file the guard (decodesSafely) and the liveness filter
// (filterReply) each decoded it once more, the filter re-encoding every
// answer as well. Here both work on the bytes: a walk over the bencode
// that allocates nothing, so the server's decode is the only one for the
// packets that rpe and other Mainline nodes send.

// maxScanDepth bounds the nesting the walk follows; deeper input is left
// to the full decode.
const maxScanDepth = 32

// scanner walks bencode in b from i; every method reports false on input
// it cannot parse, leaving i anywhere.
type scanner struct {
	b []byte
	i int
}

// str reads a byte string and returns its bytes.
func (s *scanner) str() ([]byte, bool) {
	n, digits := 0, 0
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		n = n*10 + int(s.b[s.i]-'0')
		s.i++
		if digits++; digits > 6 { // a DHT packet is below 64 KiB
			return nil, false
		}
	}
	if digits == 0 || s.i >= len(s.b) || s.b[s.i] != ':' || n > len(s.b)-s.i-1 {
		return nil, false
	}
	s.i++
	v := s.b[s.i : s.i+n]
	s.i += n
	return v, true
}

// int reads an integer that fits an int64.
func (s *scanner) int() bool {
	if s.i >= len(s.b) || s.b[s.i] != 'i' {
		return false
	}
	s.i++
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := 0
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
		digits++
	}
	if digits == 0 || digits > 18 || s.i >= len(s.b) || s.b[s.i] != 'e' {
		return false
	}
	s.i++
	return true
}

// skip reads any value.
func (s *scanner) skip(depth int) bool {
	if s.i >= len(s.b) || depth > maxScanDepth {
		return false
	}
	switch c := s.b[s.i]; {
	case c == 'i':
		return s.int()
	case c >= '0' && c <= '9':
		_, ok := s.str()
		return ok
	case c == 'l':
		s.i++
		for s.i < len(s.b) && s.b[s.i] != 'e' {
			if !s.skip(depth + 1) {
				return false
			}
		}
	case c == 'd':
		s.i++
		for s.i < len(s.b) && s.b[s.i] != 'e' {
			if _, ok := s.str(); !ok || !s.skip(depth+1) {
				return false
			}
		}
	default:
		return false
	}
	if s.i >= len(s.b) {
		return false
	}
	s.i++ // 'e'
	return true
}

// dict calls field for each key of the dict at i, with i at the key's
// value; field must read the value. It reports false on malformed input or
// when field does.
func (s *scanner) dict(field func(key []byte) bool) bool {
	if s.i >= len(s.b) || s.b[s.i] != 'd' {
		return false
	}
	s.i++
	for s.i < len(s.b) && s.b[s.i] != 'e' {
		k, ok := s.str()
		if !ok || !field(k) {
			return false
		}
	}
	if s.i >= len(s.b) {
		return false
	}
	s.i++
	return true
}

// strLen reads a string whose length is one of lens (any when lens is
// empty), or a multiple of mult when mult > 0.
func (s *scanner) strLen(mult int, lens ...int) bool {
	v, ok := s.str()
	if !ok {
		return false
	}
	if mult > 0 {
		return len(v)%mult == 0
	}
	if len(lens) == 0 {
		return true
	}
	for _, n := range lens {
		if len(v) == n {
			return true
		}
	}
	return false
}

// list reads a list whose every element item reads.
func (s *scanner) list(item func() bool) bool {
	if s.i >= len(s.b) || s.b[s.i] != 'l' {
		return false
	}
	s.i++
	for s.i < len(s.b) && s.b[s.i] != 'e' {
		if !item() {
			return false
		}
	}
	if s.i >= len(s.b) {
		return false
	}
	s.i++
	return true
}

// krpcShaped reports whether b is a KRPC message of the shape rpe and
// other Mainline nodes send: a dict of known keys only, every value of the
// type and length the decoder expects (IDs of 20 bytes, compact node lists
// in whole entries, peer addresses of 6 or 18 bytes, keys of 32 and
// signatures of 64 bytes, integers that fit). Such a message decodes
// without panicking (FuzzGuard checks it); anything else, however
// harmless, is left to the full decode. Trailing bytes are allowed, as the
// server allows them.
func krpcShaped(b []byte) bool {
	s := &scanner{b: b}
	str := func() bool { _, ok := s.str(); return ok }
	id := func() bool { return s.strLen(0, 20) }
	args := func(k []byte) bool {
		switch string(k) {
		case "id", "info_hash", "target":
			return id()
		case "token", "salt":
			return str()
		case "port", "implied_port", "noseed", "scrape", "seq", "cas":
			return s.int()
		case "want":
			return s.list(str)
		case "v":
			return s.skip(2)
		case "k":
			return s.strLen(0, 32)
		case "sig":
			return s.strLen(0, 64)
		}
		return false
	}
	ret := func(k []byte) bool {
		switch string(k) {
		case "id":
			return id()
		case "nodes":
			return s.strLen(26)
		case "nodes6":
			return s.strLen(38)
		case "token":
			return str()
		case "values":
			return s.list(func() bool { return s.strLen(0, 6, 18) })
		case "samples":
			return s.strLen(20)
		case "v":
			return s.skip(2)
		case "k":
			return s.strLen(0, 32)
		case "sig":
			return s.strLen(0, 64)
		case "seq", "cas", "interval", "num":
			return s.int()
		}
		return false
	}
	return s.dict(func(k []byte) bool {
		switch string(k) {
		case "t", "y", "q", "v":
			return str()
		case "ro":
			return s.int()
		case "ip":
			return s.strLen(0, 6, 18)
		case "a":
			return s.dict(args)
		case "r":
			return s.dict(ret)
		}
		return false
	})
}

// nodeList is where a compact node list sits in an answer: the string's
// length prefix starts at at, its entries span data.
type nodeList struct {
	at         int
	start, end int
	entry      int // 26 for "nodes", 38 for "nodes6"
}

// answerNodeLists finds the "nodes" and "nodes6" strings of a KRPC
// response (y = "r"); nil when b is not one or does not parse.
func answerNodeLists(b []byte) []nodeList {
	s := &scanner{b: b}
	var lists []nodeList
	isResponse := false
	ok := s.dict(func(k []byte) bool {
		switch {
		case string(k) == "y":
			v, ok := s.str()
			isResponse = ok && bytes.Equal(v, []byte("r"))
			return ok
		case string(k) == "r" && s.i < len(b) && b[s.i] == 'd':
			return s.dict(func(k []byte) bool {
				entry := 0
				switch string(k) {
				case "nodes":
					entry = 26
				case "nodes6":
					entry = 38
				default:
					return s.skip(1)
				}
				at := s.i
				v, ok := s.str()
				if !ok || len(v)%entry != 0 {
					return false
				}
				lists = append(lists, nodeList{at: at, start: s.i - len(v), end: s.i, entry: entry})
				return true
			})
		}
		return s.skip(0)
	})
	if !ok || !isResponse {
		return nil
	}
	return lists
}

// cutNodes returns b without the entries of its node lists for which dead
// reports true, and whether it cut any. b itself is returned, unchanged,
// when nothing is cut.
func cutNodes(b []byte, lists []nodeList, dead func(netip.AddrPort) bool) ([]byte, bool) {
	var out []byte
	pos := 0
	for _, l := range lists {
		var keep []byte
		cut := false
		for e := l.start; e < l.end; e += l.entry {
			if dead(compactAddr(b[e+20 : e+l.entry])) {
				if !cut {
					cut = true
					keep = append(keep, b[l.start:e]...)
				}
				continue
			}
			if cut {
				keep = append(keep, b[e:e+l.entry]...)
			}
		}
		if !cut {
			continue
		}
		if out == nil {
			out = make([]byte, 0, len(b))
		}
		out = append(out, b[pos:l.at]...)
		out = strconv.AppendInt(out, int64(len(keep)), 10)
		out = append(out, ':')
		out = append(out, keep...)
		pos = l.end
	}
	if out == nil {
		return b, false
	}
	return append(out, b[pos:]...), true
}

// compactAddr reads a compact address: 4 or 16 address bytes and a port.
func compactAddr(b []byte) netip.AddrPort {
	a, _ := netip.AddrFromSlice(b[:len(b)-2])
	return netip.AddrPortFrom(a.Unmap(), uint16(b[len(b)-2])<<8|uint16(b[len(b)-1]))
}

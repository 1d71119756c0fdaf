package network

import (
	"errors"
	"testing"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
)

// FuzzGuard: whatever arrives, the guard does not panic, and what it lets
// through decodes without panicking (the server decodes it again); what it
// lets through undecoded (krpcShaped) decodes without error too, so the
// server never logs it as bad.
func FuzzGuard(f *testing.F) {
	for _, s := range []string{
		"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
		"d1:rd2:id20:abcdefghij01234567895:nodes26:abcdefghij0123456789\x7f\x00\x00\x01\x1a\xe1e1:t2:aa1:y1:re",
		"d1:rd2:id20:abcdefghij01234567896:valuesl6:\x7f\x00\x00\x01\x1a\xe1ee1:t2:aa1:y1:re",
		"d2:ip0:1:t2:aa1:y1:re",
		"d1:rd2:id20:abcdefghij01234567896:valuesl1:xee1:t2:aa1:y1:re",
		"d1:eli201e5:errore1:t2:aa1:y1:ee",
		"d1:q4:ping1:t2:aa1:y1:q",
		"d1:ad2:id20:abcdefghij01234567891:k32:abcdefghij0123456789abcdefghij013:seqi7e3:sig64:abcdefghij0123456789abcdefghij0123456789abcdefghij0123456789abcd5:token2:tk1:vd1:xli1ei-2eeee1:q3:put1:t2:aa1:y1:qe",
		"d2:ip6:\x7f\x00\x00\x01\x1a\xe11:rd2:id20:abcdefghij01234567895:token2:tk6:valuesl6:\x7f\x00\x00\x01\x1a\xe1ee1:t2:aa1:y1:r2:roi1ee",
		"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:abcdefghij01234567894:porti6881e5:token2:tke1:q13:announce_peer1:t2:aa1:y1:qe",
		"d1:ad2:id20:abcdefghij01234567896:target20:abcdefghij01234567894:wantl2:n42:n6ee1:q9:find_node1:t2:aa1:y1:qe",
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
		err := bencode.Unmarshal(b, &m) // must not panic
		var trailing bencode.ErrUnusedTrailingBytes
		if krpcShaped(b) && err != nil && !errors.As(err, &trailing) {
			t.Errorf("krpcShaped(%q) but the decode fails: %v", b, err)
		}
	})
}

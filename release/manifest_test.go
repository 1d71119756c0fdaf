package release

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

func testOptions() BuildOptions {
	return BuildOptions{App: "myapp", Channel: "stable", Platform: "linux-amd64", Version: "1.2.3", ChunkSize: MinChunkSize, Created: testTime}
}

// testManifest signs the manifest of 100 000 pattern bytes (7 chunks).
func testManifest(t testing.TB) (*SignedManifest, []byte) {
	t.Helper()
	data := patternBytes(t, 100_000, 1)
	m, err := BuildManifest(bytes.NewReader(data), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	sm, err := SignManifest(m, testKey())
	if err != nil {
		t.Fatal(err)
	}
	return sm, data
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the golden file (%d bytes, want %d): the encoding changed", name, len(got), len(want))
	}
}

func TestBuildManifest(t *testing.T) {
	sm, data := testManifest(t)
	m := sm.Manifest
	if m.Size != int64(len(data)) || m.NumChunks() != 7 || len(m.Chunks) != 7 {
		t.Fatalf("size %d, %d chunks", m.Size, len(m.Chunks))
	}
	if m.FileHash != sha256.Sum256(data) {
		t.Fatal("file hash")
	}
	for i := range m.NumChunks() {
		off := m.ChunkOffset(i)
		c := data[off : off+int64(m.ChunkLen(i))]
		if m.Chunks[i] != sha256.Sum256(c) {
			t.Fatalf("chunk %d hash", i)
		}
		if err := m.VerifyChunk(i, c); err != nil {
			t.Fatal(err)
		}
	}
	if m.ChunkLen(6) != 100_000-6*MinChunkSize || m.ChunkLen(7) != 0 || m.ChunkLen(-1) != 0 {
		t.Fatal("ChunkLen")
	}
	if !m.Expires.Equal(testTime.Add(DefaultLifetime)) {
		t.Fatalf("default expiry %v", m.Expires)
	}
	if sm.ID != sha256.Sum256(sm.Raw) {
		t.Fatal("ID is not the SHA-256 of the encoding")
	}
	golden(t, "manifest.rpem", sm.Raw)
}

func TestBuildManifestSizes(t *testing.T) {
	// Sizes around the stream block and chunk boundaries agree with a
	// one-shot computation.
	for _, n := range []int64{1, MinChunkSize - 1, MinChunkSize, MinChunkSize + 1, streamBlock - 1, streamBlock, streamBlock + 1, 3*streamBlock + 5, 5 * streamBlock} {
		for _, cs := range []int{MinChunkSize, 100_000, streamBlock, MaxChunkSize} {
			data := patternBytes(t, n, uint64(n))
			opts := testOptions()
			opts.ChunkSize = cs
			m, err := BuildManifest(iotestHalfReader(data), opts)
			if err != nil {
				t.Fatal(err)
			}
			if m.Size != n || m.FileHash != sha256.Sum256(data) || len(m.Chunks) != m.NumChunks() {
				t.Fatalf("n=%d cs=%d: size %d, %d chunks", n, cs, m.Size, len(m.Chunks))
			}
			for i := range m.Chunks {
				if err := m.VerifyChunk(i, data[m.ChunkOffset(i):m.ChunkOffset(i)+int64(m.ChunkLen(i))]); err != nil {
					t.Fatalf("n=%d cs=%d: %v", n, cs, err)
				}
			}
			if err := VerifyFile(bytes.NewReader(data), m); err != nil {
				t.Fatalf("n=%d cs=%d: %v", n, cs, err)
			}
		}
	}
}

// iotestHalfReader returns short reads, as pipes and sockets do.
func iotestHalfReader(b []byte) io.Reader { return &halfReader{b} }

type halfReader struct{ b []byte }

func (h *halfReader) Read(p []byte) (int, error) {
	if len(h.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:max(1, len(p)/2)], h.b)
	h.b = h.b[n:]
	return n, nil
}

type errReader struct{ after int64 }

func (e *errReader) Read(p []byte) (int, error) {
	if e.after <= 0 {
		return 0, errors.New("disk on fire")
	}
	n := min(int64(len(p)), e.after)
	e.after -= n
	return int(n), nil
}

func TestBuildManifestErrors(t *testing.T) {
	data := []byte("some bytes")
	for _, tc := range []struct {
		name string
		edit func(*BuildOptions)
		r    io.Reader
		want error
	}{
		{"not semver", func(o *BuildOptions) { o.Version = "notsemver" }, nil, ErrNotSemver},
		{"no app", func(o *BuildOptions) { o.App = "" }, nil, ErrBadName},
		{"bad platform", func(o *BuildOptions) { o.Platform = "Linux/amd64" }, nil, ErrBadName},
		{"empty", nil, bytes.NewReader(nil), ErrEmpty},
		{"too large", func(o *BuildOptions) { o.MaxSize = 5 }, nil, ErrSizeLimit},
		{"chunk too small", func(o *BuildOptions) { o.ChunkSize = MinChunkSize - 1 }, nil, nil},
		{"chunk too large", func(o *BuildOptions) { o.ChunkSize = MaxChunkSize + 1 }, nil, nil},
		{"expires before created", func(o *BuildOptions) { o.Expires = testTime.Add(-time.Second) }, nil, nil},
		{"read error", nil, &errReader{after: 3 * streamBlock}, nil},
		{"early read error", nil, &errReader{after: 10}, nil},
	} {
		opts := testOptions()
		if tc.edit != nil {
			tc.edit(&opts)
		}
		r := tc.r
		if r == nil {
			r = bytes.NewReader(data)
		}
		_, err := BuildManifest(r, opts)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestBuildManifestDefaults(t *testing.T) {
	m, err := BuildManifest(strings.NewReader("x"), BuildOptions{App: "a", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Channel != "stable" || m.Platform != DefaultPlatform() || m.ChunkSize != DefaultChunkSize {
		t.Fatalf("defaults: %+v", m)
	}
	if d := m.Expires.Sub(m.Created); d != DefaultLifetime {
		t.Fatalf("lifetime %v", d)
	}
	if time.Since(m.Created) > time.Minute || m.Created.Nanosecond() != 0 {
		t.Fatalf("created %v", m.Created)
	}
}

func TestParseManifest(t *testing.T) {
	sm, _ := testManifest(t)
	pub := PublicKeyOf(testKey())
	got, err := ParseManifest(sm.Raw, pub, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != sm.ID || got.PublicKey != pub {
		t.Fatal("ID or key differ")
	}
	m := got.Manifest
	if m.App != "myapp" || m.Channel != "stable" || m.Platform != "linux-amd64" || m.Version.String() != "1.2.3" ||
		m.Size != 100_000 || m.ChunkSize != MinChunkSize || !m.Created.Equal(testTime) || len(m.Chunks) != 7 {
		t.Fatalf("decoded %+v", m)
	}
	// Re-signing the decoded manifest gives the same bytes.
	again, err := SignManifest(m, testKey())
	if err != nil || !bytes.Equal(again.Raw, sm.Raw) {
		t.Fatalf("re-sign: %v", err)
	}
}

// resign re-signs a manifest body edited by edit, so that only the edited
// rule can fail.
func resign(t *testing.T, raw []byte, edit func(body []byte) []byte) []byte {
	t.Helper()
	body := edit(bytes.Clone(raw[:len(raw)-64]))
	return append(body, signBody(body)...)
}

func signBody(body []byte) []byte {
	return ed25519Sign(testKey(), manifestSignedMessage(body))
}

func TestParseManifestErrors(t *testing.T) {
	sm, _ := testManifest(t)
	raw := sm.Raw
	pub := PublicKeyOf(testKey())
	// Offsets in the test manifest (see docs/FORMATS.md).
	const (
		offApp     = 37
		offSize    = offApp + 1 + 5 + 1 + 6 + 1 + 11 + 1 + 5
		offChunkSz = offSize + 8
		offCreated = offChunkSz + 4
		offExpires = offCreated + 8
		offCount   = offExpires + 8 + 32
	)
	if string(raw[offApp+1:offApp+6]) != "myapp" || binary.BigEndian.Uint64(raw[offSize:]) != 100_000 || binary.BigEndian.Uint32(raw[offCount:]) != 7 {
		t.Fatal("test offsets are wrong")
	}
	put32 := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint32(b[off:], v); return b }
	}
	put64 := func(off int, v uint64) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint64(b[off:], v); return b }
	}
	for _, tc := range []struct {
		name string
		raw  []byte
		lim  Limits
		pub  PublicKey
		want []error
		msg  string
	}{
		{name: "empty", raw: nil, want: []error{ErrMalformed}},
		{name: "bad magic", raw: append([]byte("XPEM"), raw[4:]...), want: []error{ErrMalformed}, msg: "does not start"},
		{name: "format 2", raw: resign(t, raw, func(b []byte) []byte { b[4] = 2; return b }), want: []error{ErrMalformed}, msg: "format 2"},
		{name: "truncated header", raw: raw[:60], want: []error{ErrMalformed}, msg: "truncated"},
		{name: "truncated signature", raw: raw[:len(raw)-1], want: []error{ErrMalformed}},
		{name: "trailing bytes", raw: append(bytes.Clone(raw), 0), want: []error{ErrMalformed}, msg: "trailing"},
		{name: "wrong key", raw: raw, pub: PublicKeyOf(otherKey()), want: []error{ErrWrongKey, ErrBadSignature}},
		{name: "bad signature", raw: func() []byte { b := bytes.Clone(raw); b[len(b)-1] ^= 1; return b }(), want: []error{ErrBadSignature}},
		{name: "tampered body", raw: func() []byte { b := bytes.Clone(raw); b[offCount+10] ^= 1; return b }(), want: []error{ErrBadSignature}},
		{name: "size too large for count", raw: resign(t, raw, put64(offSize, 200_000)), want: []error{ErrMalformed}, msg: "make 13 chunks"},
		{name: "size zero", raw: resign(t, raw, put64(offSize, 0)), want: []error{ErrMalformed, ErrEmpty}},
		{name: "size negative", raw: resign(t, raw, put64(offSize, 1<<63)), want: []error{ErrMalformed}},
		{name: "chunk size small", raw: resign(t, raw, put32(offChunkSz, MinChunkSize-1)), want: []error{ErrMalformed}, msg: "chunk size"},
		{name: "chunk size large", raw: resign(t, raw, put32(offChunkSz, MaxChunkSize+1)), want: []error{ErrMalformed}, msg: "chunk size"},
		{name: "count too large", raw: resign(t, raw, put32(offCount, 8)), want: []error{ErrMalformed}},
		{name: "count huge", raw: resign(t, raw, put32(offCount, 1<<31)), want: []error{ErrMalformed}},
		{name: "count small", raw: resign(t, raw, put32(offCount, 6)), want: []error{ErrMalformed}, msg: "trailing"},
		{name: "above limit", raw: raw, lim: Limits{MaxSize: 99_999}, want: []error{ErrMalformed, ErrSizeLimit}},
		{name: "expires before created", raw: resign(t, raw, put64(offExpires, uint64(testTime.Unix()))), want: []error{ErrMalformed}, msg: "not after"},
		{name: "version not canonical", raw: resign(t, raw, func(b []byte) []byte { copy(b[offSize-5:], "01.2."); return b }), want: []error{ErrMalformed, ErrNotSemver}},
		{name: "app upper case", raw: resign(t, raw, func(b []byte) []byte { b[offApp+1] = 'M'; return b }), want: []error{ErrMalformed, ErrBadName}},
		{name: "app empty", raw: resign(t, raw, func(b []byte) []byte { b[offApp] = 0; return b }), want: []error{ErrMalformed}},
		{name: "too big to be a manifest", raw: make([]byte, MaxManifestSize+1), want: []error{ErrMalformed, ErrSizeLimit}},
	} {
		p := tc.pub
		if p == (PublicKey{}) {
			p = pub
		}
		_, err := ParseManifest(tc.raw, p, tc.lim)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !errors.Is(err, w) {
				t.Errorf("%s: %v, want %v", tc.name, err, w)
			}
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %q lacks %q", tc.name, err, tc.msg)
		}
	}
}

func TestManifestCheck(t *testing.T) {
	sm, _ := testManifest(t)
	m := sm.Manifest
	want := Target{"myapp", "stable", "linux-amd64"}
	for _, tc := range []struct {
		name   string
		target Target
		now    time.Time
		want   error
		msg    string
	}{
		{"ok", want, testTime.Add(time.Hour), nil, ""},
		{"ok at skew", want, testTime.Add(-MaxClockSkew), nil, ""},
		{"app", Target{"other", "stable", "linux-amd64"}, testTime, ErrWrongTarget, `app is "myapp", want "other"`},
		{"channel", Target{"myapp", "beta", "linux-amd64"}, testTime, ErrWrongTarget, "channel"},
		{"platform", Target{"myapp", "stable", "linux-arm64"}, testTime, ErrWrongTarget, "platform"},
		{"expired", want, m.Expires, ErrExpired, ""},
		{"not yet", want, testTime.Add(-MaxClockSkew - time.Second), ErrNotYetValid, ""},
	} {
		err := m.Check(tc.target, tc.now)
		if !errors.Is(err, tc.want) || (err != nil && !strings.Contains(err.Error(), tc.msg)) {
			t.Errorf("%s: %v, want %v %q", tc.name, err, tc.want, tc.msg)
		}
	}
}

func TestVerifyChunkErrors(t *testing.T) {
	sm, data := testManifest(t)
	m := sm.Manifest
	var ce *ChunkError
	err := m.VerifyChunk(2, data[:MinChunkSize])
	if !errors.As(err, &ce) || ce.Index != 2 || !errors.Is(err, ErrChunkMismatch) {
		t.Fatalf("wrong data: %v", err)
	}
	err = m.VerifyChunk(1, data[MinChunkSize:2*MinChunkSize-1])
	if !errors.As(err, &ce) || ce.Index != 1 || !errors.Is(err, ErrChunkMismatch) || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("short data: %v", err)
	}
	for _, i := range []int{-1, 7} {
		if err := m.VerifyChunk(i, nil); !errors.As(err, &ce) || ce.Index != i || !errors.Is(err, ErrNoSuchChunk) {
			t.Fatalf("index %d: %v", i, err)
		}
	}
}

func TestVerifyFile(t *testing.T) {
	sm, data := testManifest(t)
	m := sm.Manifest
	if err := VerifyFile(bytes.NewReader(data), m); err != nil {
		t.Fatal(err)
	}
	// Flipping any byte names its chunk.
	for _, off := range []int{0, 1, MinChunkSize - 1, MinChunkSize, 50_000, len(data) - 1} {
		b := bytes.Clone(data)
		b[off] ^= 0x40
		err := VerifyFile(bytes.NewReader(b), m)
		var ce *ChunkError
		if !errors.As(err, &ce) || ce.Index != off/MinChunkSize || !errors.Is(err, ErrChunkMismatch) {
			t.Errorf("flip at %d: %v, want chunk %d", off, err, off/MinChunkSize)
		}
	}
	for _, n := range []int{0, 1, MinChunkSize, len(data) - 1} {
		if err := VerifyFile(bytes.NewReader(data[:n]), m); !errors.Is(err, ErrTruncated) {
			t.Errorf("truncated to %d: %v", n, err)
		}
	}
	if err := VerifyFile(io.MultiReader(bytes.NewReader(data), strings.NewReader("x")), m); !errors.Is(err, ErrTooLong) {
		t.Errorf("one byte more: %v", err)
	}
	// A truncated file that is also tampered is reported as tampered.
	b := bytes.Clone(data[:50_000])
	b[10] ^= 1
	var ce *ChunkError
	if err := VerifyFile(bytes.NewReader(b), m); !errors.As(err, &ce) || ce.Index != 0 {
		t.Errorf("tampered and truncated: %v", err)
	}
	// The chunk hashes are the commitment: a manifest whose whole-file hash
	// alone is wrong (which only its signer can make) still verifies.
	bad := *m
	bad.FileHash[0] ^= 1
	if err := VerifyFile(bytes.NewReader(data), &bad); err != nil {
		t.Errorf("whole-file hash compared: %v", err)
	}
}

func TestSignManifestRules(t *testing.T) {
	sm, _ := testManifest(t)
	m := *sm.Manifest
	m.Chunks = m.Chunks[:3]
	if _, err := SignManifest(&m, testKey()); err == nil {
		t.Fatal("signed a manifest with a wrong chunk count")
	}
	if _, err := SignManifest(sm.Manifest, testKey()[:10]); err == nil {
		t.Fatal("signed with a short key")
	}
}

func TestManifestSizeLimit(t *testing.T) {
	// The largest manifest under the default limit fits MaxManifestSize.
	m := &Manifest{App: strings.Repeat("a", 63), Channel: strings.Repeat("c", 63), Platform: strings.Repeat("p", 63),
		Size: DefaultMaxSize, ChunkSize: MinChunkSize, Created: testTime, Expires: testTime.Add(time.Hour)}
	m.Version, _ = ParseVersion("1.2.3-" + strings.Repeat("x", MaxVersionLen-6))
	m.Chunks = make([][32]byte, m.NumChunks())
	sm, err := SignManifest(m, testKey())
	if err != nil {
		t.Fatal(err)
	}
	if len(sm.Raw) > MaxManifestSize || ManifestSizeLimit(Limits{}) != MaxManifestSize {
		t.Fatalf("largest manifest %d bytes, MaxManifestSize %d", len(sm.Raw), MaxManifestSize)
	}
	if _, err := ParseManifest(sm.Raw, PublicKeyOf(testKey()), Limits{}); err != nil {
		t.Fatal(err)
	}
	// Content-defined chunks (format 2) carry a length each: the largest
	// such manifest is the largest there is.
	m.Chunker, m.AverageBits, m.MinChunk = ChunkContent, DefaultContentAverageBits, MinChunkSize
	m.Lengths = make([]int, len(m.Chunks))
	for i := range m.Lengths {
		m.Lengths[i] = MinChunkSize
	}
	if sm, err = SignManifest(m, testKey()); err != nil {
		t.Fatal(err)
	}
	if len(sm.Raw) != MaxManifestSize {
		t.Fatalf("largest content-chunked manifest %d bytes, MaxManifestSize %d", len(sm.Raw), MaxManifestSize)
	}
	if _, err := ParseManifest(sm.Raw, PublicKeyOf(testKey()), Limits{}); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyFileInconsistentManifest(t *testing.T) {
	for _, m := range []*Manifest{{}, {Size: 10, ChunkSize: MinChunkSize}, {Size: 10, ChunkSize: 1, Chunks: make([][32]byte, 10)}} {
		if err := VerifyFile(strings.NewReader("0123456789"), m); err == nil {
			t.Errorf("%+v accepted", m)
		}
	}
}

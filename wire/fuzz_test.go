package wire

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// fuzzSeeds are frames worth starting from: every sample message, and a few
// broken frames.
func fuzzSeeds() [][]byte {
	var seeds [][]byte
	for _, m := range sampleMessages() {
		f, _ := EncodeMessage(m)
		seeds = append(seeds, f)
	}
	return append(seeds,
		EncodeFrame(TypeChunk, []byte("chunk bytes")),
		EncodeFrame(TypeManifest, []byte("manifest")),
		header(TypeHello, 1<<30),
		header(0x7f, 0),
		header(TypeHave, 3),
		[]byte{},
	)
}

// FuzzReadFrame: ReadFrame and DecodeFrame agree, never panic, never return
// a payload over the limit, and a frame they accept re-encodes to the bytes
// they read.
func FuzzReadFrame(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s, uint16(1<<15))
	}
	f.Fuzz(func(t *testing.T, data []byte, max uint16) {
		r := bytes.NewReader(data)
		typ, p, err := ReadFrame(r, int(max))
		typ2, p2, rest, err2 := DecodeFrame(data, int(max))
		if (err == nil) != (err2 == nil) {
			t.Fatalf("ReadFrame err %v, DecodeFrame err %v", err, err2)
		}
		if err != nil {
			return
		}
		if typ != typ2 || !bytes.Equal(p, p2) || len(rest) != r.Len() {
			t.Fatal("ReadFrame and DecodeFrame disagree")
		}
		if len(p) > int(max) || !typ.Known() {
			t.Fatalf("accepted %s of %d bytes with limit %d", typ, len(p), max)
		}
		if enc := EncodeFrame(typ, p); !bytes.Equal(enc, data[:len(enc)]) {
			t.Fatal("frame does not re-encode to its bytes")
		}
	})
}

// FuzzDecodeMessage: decoding never panics, and a message it accepts
// encodes back to exactly the payload (decoding is canonical).
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range fuzzSeeds() {
		if len(s) >= HeaderSize {
			f.Add(s[0], s[HeaderSize:])
		}
	}
	f.Fuzz(func(t *testing.T, typ byte, payload []byte) {
		m, err := DecodeMessage(Type(typ), payload)
		if err != nil {
			return
		}
		if m.Type() != Type(typ) {
			t.Fatalf("decoded %s from type %s", m.Type(), Type(typ))
		}
		enc, err := EncodeMessage(m)
		if err != nil {
			t.Fatalf("decoded %#v does not encode: %v", m, err)
		}
		if !bytes.Equal(enc[HeaderSize:], payload) {
			t.Fatalf("%s does not round-trip", m.Type())
		}
	})
}

// TestWriteFuzzCorpus regenerates the committed seed corpus under
// testdata/fuzz when WIRE_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("WIRE_WRITE_CORPUS") != "1" {
		t.Skip("set WIRE_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	write := func(target string, i int, body string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		name := filepath.Join(dir, fmt.Sprintf("seed%02d", i))
		if err := os.WriteFile(name, []byte("go test fuzz v1\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range fuzzSeeds() {
		write("FuzzReadFrame", i, fmt.Sprintf("[]byte(%q)\nuint16(%d)\n", s, 1<<15))
		if len(s) >= HeaderSize {
			write("FuzzDecodeMessage", i, fmt.Sprintf("byte(%d)\n[]byte(%q)\n", s[0], s[HeaderSize:]))
		}
	}
}

package release

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// writeTemp writes prefix and data to a new file and returns it opened, its
// offset just after prefix.
func writeTemp(t *testing.T, prefix, data []byte) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "artifact")
	if err := os.WriteFile(path, append(append([]byte{}, prefix...), data...), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.Seek(int64(len(prefix)), io.SeekStart); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestBuildManifestFileMatchesStream(t *testing.T) {
	// A file is read twice at offsets, a stream once; the manifests must be
	// equal, and the file's offset must end where reading it would leave it.
	prefix := []byte("not part of the artifact")
	for _, n := range []int64{1, MinChunkSize + 1, streamBlock, 3*streamBlock + 5} {
		for _, cs := range []int{MinChunkSize, 100_000, MaxChunkSize} {
			data := patternBytes(t, n, uint64(n))
			opts := testOptions()
			opts.ChunkSize = cs
			f := writeTemp(t, prefix, data)
			got, err := BuildManifest(f, opts)
			if err != nil {
				t.Fatal(err)
			}
			want, err := BuildManifest(bytes.NewReader(data), opts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("n=%d cs=%d: file and stream manifests differ", n, cs)
			}
			if off, _ := f.Seek(0, io.SeekCurrent); off != int64(len(prefix))+n {
				t.Fatalf("n=%d cs=%d: offset %d after build, want %d", n, cs, off, int64(len(prefix))+n)
			}
			if _, err := f.Seek(int64(len(prefix)), io.SeekStart); err != nil {
				t.Fatal(err)
			}
			if err := VerifyFile(f, want); err != nil {
				t.Fatalf("n=%d cs=%d: %v", n, cs, err)
			}
		}
	}
}

func TestVerifyFileOnDisk(t *testing.T) {
	sm, data := testManifest(t)
	m := sm.Manifest
	tampered := bytes.Clone(data)
	tampered[3*m.ChunkSize+5] ^= 1
	for _, tc := range []struct {
		name  string
		data  []byte
		check func(error) bool
	}{
		{"intact", data, func(err error) bool { return err == nil }},
		{"tampered chunk 3", tampered, func(err error) bool {
			var ce *ChunkError
			return errors.As(err, &ce) && ce.Index == 3
		}},
		{"truncated", data[:len(data)-1], func(err error) bool { return errors.Is(err, ErrTruncated) }},
		{"too long", append(bytes.Clone(data), 0), func(err error) bool { return errors.Is(err, ErrTooLong) }},
	} {
		if err := VerifyFile(writeTemp(t, nil, tc.data), m); !tc.check(err) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestHashFileRefusesChangedFile(t *testing.T) {
	data := patternBytes(t, 3*streamBlock, 9)
	for _, tc := range []struct {
		name   string
		change func(path string) error
	}{
		{"grew", func(path string) error {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte("more"))
			return err
		}},
		{"shrank", func(path string) error { return os.Truncate(path, streamBlock+3) }},
	} {
		f := writeTemp(t, nil, data)
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		// The file changes after hashFile's first look at it.
		if err := tc.change(f.Name()); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := hashFile(f, fi, MinChunkSize, 1<<30); !errors.Is(err, ErrChanged) {
			t.Errorf("%s: %v, want ErrChanged", tc.name, err)
		}
	}
}

func TestBuildManifestPipe(t *testing.T) {
	// A pipe is no regular file: it is read once, as a stream.
	data := patternBytes(t, 3*streamBlock+5, 4)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	go func() {
		pw.Write(data)
		pw.Close()
	}()
	got, err := BuildManifest(pr, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	want, err := BuildManifest(bytes.NewReader(data), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatal("pipe and in-memory manifests differ")
	}
}

func TestBuildManifestFileTooLarge(t *testing.T) {
	opts := testOptions()
	opts.MaxSize = 100
	if _, err := BuildManifest(writeTemp(t, nil, make([]byte, 101)), opts); !errors.Is(err, ErrSizeLimit) {
		t.Fatalf("%v, want ErrSizeLimit", err)
	}
}

package installer

import (
	"strings"
	"testing"
	"time"
)

func FuzzDecodePending(f *testing.F) {
	f.Add([]byte(`{"format":1,"version":"1.1.0","target":"/a","backup":"/b","attempts":0}`))
	f.Add([]byte(`{"format":1,"version":"2.0.0-rc.1","previous_version":"1.9.9","manifest_id":"ab",` +
		`"target":"/usr/bin/x","backup":"/var/lib/x/backup/x","deadline":"2026-11-29T04:33:52.5+01:00",` +
		`"attempts":2,"max_attempts":5,"health_timeout_ms":1500}`))
	f.Add([]byte(`{"format":1,"version":"1","target":"/a","backup":"/b","attempts":0,"deadline":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"format":1,"version":"1.2.0","previous_version":"1.0.0","target":"/a","backup":"/b","attempts":0,` +
		`"size":5,"sha256":"` + strings.Repeat("0f", 32) + `","replaced_unconfirmed":true,"installed_by":"1.1.0"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := decodePending(data)
		if err != nil {
			return
		}
		enc, err := encodePending(p)
		if err != nil {
			t.Fatalf("decoded marker %+v does not encode: %v", p, err)
		}
		q, err := decodePending(enc)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", enc, err)
		}
		if !p.Deadline.Equal(q.Deadline) {
			t.Fatalf("deadline %v became %v", p.Deadline, q.Deadline)
		}
		p.Deadline, q.Deadline = time.Time{}, time.Time{}
		if *p != *q {
			t.Fatalf("round trip: %+v became %+v", *p, *q)
		}
	})
}

func FuzzDecodeFailed(f *testing.F) {
	f.Add([]byte(`{"format":1,"failed":[]}`))
	f.Add([]byte(`{"format":1,"failed":[{"version":"1.1.0","manifest_id":"ab","at":"2026-11-29T04:36:00Z","reason":"x"}]}`))
	f.Add([]byte(`{"format":1,"failed":[{"version":"1","at":"2026-11-29T04:36:00+02:00","reason":"` + strings.Repeat(`\u0001`, 600) + `"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := decodeFailed(data)
		if err != nil {
			return
		}
		enc, err := encodeFailed(list)
		if err != nil {
			return // a time json cannot write (year outside 0..9999 after UTC)
		}
		if len(enc) > maxStateFile {
			t.Fatalf("encoded list of %d bytes exceeds the read cap", len(enc))
		}
		again, err := decodeFailed(enc)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", enc, err)
		}
		enc2, err := encodeFailed(again)
		if err != nil || string(enc2) != string(enc) {
			t.Fatalf("encoding not stable: %v\n%s\n%s", err, enc, enc2)
		}
		if len(again) > len(list) {
			t.Fatal("entries appeared")
		}
	})
}

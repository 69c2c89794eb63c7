package pdu

import (
	"bytes"
	"net"
	"testing"
)

func TestParseTextRepeated(t *testing.T) {
	in := []byte("TargetName=iqn.a\x00TargetAddress=127.0.0.1:3260,1\x00TargetAddress=[::1]:3260,1\x00TargetName=iqn.b\x00")
	kvs, err := ParseTextRepeated(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 4 || kvs[2].Value != "[::1]:3260,1" || kvs[3].Value != "iqn.b" {
		t.Fatalf("got %q", kvs)
	}
	if !bytes.Equal(EncodeText(kvs), in) {
		t.Fatalf("round trip: %q", EncodeText(kvs))
	}
	for _, bad := range []string{"novalue\x00", "=x\x00", "k y=1\x00"} {
		if _, err := ParseTextRepeated([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzParseTextRepeated(f *testing.F) {
	f.Add([]byte("TargetName=iqn.a\x00TargetAddress=127.0.0.1:3260,1\x00"))
	f.Add([]byte("a=b\x00a=c"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kvs, err := ParseTextRepeated(b)
		if err != nil {
			return
		}
		again, err := ParseTextRepeated(EncodeText(kvs))
		if err != nil || len(again) != len(kvs) {
			t.Fatalf("re-parse of %q: %v %q", EncodeText(kvs), err, again)
		}
	})
}

func TestAppendBuffersMatchesMarshal(t *testing.T) {
	for _, opts := range []Options{{}, {HeaderDigest: true}, {HeaderDigest: true, DataDigest: true}} {
		var bufs net.Buffers
		var want []byte
		for i, n := range []int{0, 1, 3, 4, 8192} {
			p := &PDU{Data: bytes.Repeat([]byte{byte(i)}, n)}
			p.SetOpcode(OpDataOut)
			p.SetITT(uint32(i))
			m, err := Marshal(p, opts)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, m...)
			if bufs, err = AppendBuffers(bufs, p, opts); err != nil {
				t.Fatal(err)
			}
		}
		var got bytes.Buffer
		if _, err := bufs.WriteTo(&got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("%+v: AppendBuffers and Marshal differ", opts)
		}
		r := bytes.NewReader(got.Bytes())
		for i := 0; i < 5; i++ {
			if _, err := Read(r, Options{HeaderDigest: opts.HeaderDigest, DataDigest: opts.DataDigest, MaxDataSegmentLength: 8192}); err != nil {
				t.Fatalf("re-read PDU %d: %v", i, err)
			}
		}
	}
}

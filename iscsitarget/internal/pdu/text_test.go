package pdu

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseText(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []KV
		err  bool
	}{
		{"two", "A=1\x00B=Yes\x00", []KV{{"A", "1"}, {"B", "Yes"}}, false},
		{"no final nul", "A=1\x00B=x", []KV{{"A", "1"}, {"B", "x"}}, false},
		{"padding", "A=1\x00\x00\x00\x00", []KV{{"A", "1"}}, false},
		{"empty value", "A=\x00", []KV{{"A", ""}}, false},
		{"equals in value", "CHAP_C=0x=1\x00", []KV{{"CHAP_C", "0x=1"}}, false},
		{"empty", "", nil, false},
		{"no equals", "A\x00", nil, true},
		{"empty key", "=1\x00", nil, true},
		{"bad key byte", "A B=1\x00", nil, true},
		{"duplicate", "A=1\x00A=2\x00", nil, true},
		{"long key", string(make([]byte, 64)) + "=1", nil, true},
	} {
		got, err := ParseText([]byte(tc.in))
		if (err != nil) != tc.err {
			t.Errorf("%s: err = %v, want error %v", tc.name, err, tc.err)
			continue
		}
		if err != nil && !errors.Is(err, ErrText) {
			t.Errorf("%s: err %v is not ErrText", tc.name, err)
		}
		if !tc.err && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestEncodeTextRoundTrip(t *testing.T) {
	kvs := []KV{{"InitiatorName", "iqn.x"}, {"MaxBurstLength", "262144"}, {"X", ""}}
	b := EncodeText(kvs)
	if string(b) != "InitiatorName=iqn.x\x00MaxBurstLength=262144\x00X=\x00" {
		t.Fatalf("encoded %q", b)
	}
	got, err := ParseText(b)
	if err != nil || !reflect.DeepEqual(got, kvs) {
		t.Fatalf("round trip %v %v", got, err)
	}
	if v, ok := Lookup(got, "MaxBurstLength"); !ok || v != "262144" {
		t.Errorf("lookup = %q %v", v, ok)
	}
}

func TestValues(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		err  bool
	}{
		{"0", 0, false}, {"262144", 262144, false}, {"0x10", 16, false}, {"0X1f", 31, false},
		{"", 0, true}, {"-1", 0, true}, {"1.5", 0, true}, {"0x", 0, true}, {"99999999999999999999", 0, true},
		{"+5", 0, true},
	} {
		got, err := ParseNumber(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseNumber(%q) = %d, %v", tc.in, got, err)
		}
	}
	if _, err := ParseNumberIn("16777216", 512, 1<<24-1); err == nil {
		t.Errorf("out of range accepted")
	}
	if n, err := ParseNumberIn("8192", 512, 1<<24-1); err != nil || n != 8192 {
		t.Errorf("in range: %d %v", n, err)
	}
	for in, want := range map[string]bool{"Yes": true, "No": false} {
		if got, err := ParseBool(in); err != nil || got != want {
			t.Errorf("ParseBool(%q) = %v %v", in, got, err)
		}
	}
	for _, in := range []string{"yes", "", "True", "1"} {
		if _, err := ParseBool(in); err == nil {
			t.Errorf("ParseBool(%q) accepted", in)
		}
	}
	if FormatBool(true) != "Yes" || FormatBool(false) != "No" {
		t.Errorf("FormatBool")
	}
	if lo, hi, err := ParseRange("1~65535"); err != nil || lo != 1 || hi != 65535 {
		t.Errorf("ParseRange = %d %d %v", lo, hi, err)
	}
	for _, in := range []string{"5~1", "1", "a~2", "~"} {
		if _, _, err := ParseRange(in); err == nil {
			t.Errorf("ParseRange(%q) accepted", in)
		}
	}
	if l, err := ParseList("CRC32C,None"); err != nil || !reflect.DeepEqual(l, []string{"CRC32C", "None"}) {
		t.Errorf("ParseList = %v %v", l, err)
	}
	if _, err := ParseList("CRC32C,,None"); err == nil {
		t.Errorf("empty list element accepted")
	}
	for _, tc := range []struct {
		offer string
		sup   []string
		want  string
		ok    bool
	}{
		{"CRC32C,None", []string{"None"}, "None", true},
		{"CRC32C,None", []string{"None", "CRC32C"}, "CRC32C", true},
		{"CRC32C", []string{"None"}, "", false},
		{"CHAP,None", []string{"CHAP"}, "CHAP", true},
		{"", []string{"None"}, "", false},
	} {
		got, ok := SelectFromList(tc.offer, tc.sup...)
		if got != tc.want || ok != tc.ok {
			t.Errorf("SelectFromList(%q, %v) = %q %v", tc.offer, tc.sup, got, ok)
		}
	}
	if NegotiateAnd(true, false) || !NegotiateAnd(true, true) || !NegotiateOr(false, true) || NegotiateOr(false, false) {
		t.Errorf("boolean negotiation")
	}
}

func FuzzParseText(f *testing.F) {
	f.Add([]byte("InitiatorName=iqn.x\x00SessionType=Discovery\x00"))
	f.Add([]byte("CHAP_A=5\x00CHAP_I=1\x00CHAP_C=0xabcdef\x00"))
	f.Add([]byte("A=\x00\x00=\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kvs, err := ParseText(b)
		if err != nil {
			return
		}
		again, err := ParseText(EncodeText(kvs))
		if err != nil || !reflect.DeepEqual(again, kvs) && len(kvs) > 0 {
			t.Fatalf("re-parse: %v %v vs %v", err, again, kvs)
		}
		for _, kv := range kvs {
			ParseNumber(kv.Value)
			ParseBool(kv.Value)
			ParseRange(kv.Value)
			ParseList(kv.Value)
		}
	})
}

package initiator

import (
	"encoding/hex"
	"strings"
	"testing"
)

func TestDecodeSense(t *testing.T) {
	descriptor := []byte{0x72, 0x03, 0x11, 0x00, 0, 0, 0, 12,
		0x00, 0x0a, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34}
	for _, tc := range []struct {
		name      string
		in        []byte
		ok        bool
		key       SenseKey
		asc, ascq byte
		info      uint64
		infoValid bool
	}{
		{"fixed", fixedSense(SenseIllegalRequest, 0x24, 0), true, SenseIllegalRequest, 0x24, 0, 0, false},
		{"fixed with info", []byte{0xf0, 0, 0x03, 0, 0, 0x10, 0, 10, 0, 0, 0, 0, 0x11, 0x00}, true, SenseMediumError, 0x11, 0, 0x1000, true},
		{"fixed short", []byte{0x70, 0, 0x06}, true, SenseUnitAttention, 0, 0, 0, false},
		{"descriptor with info", descriptor, true, SenseMediumError, 0x11, 0, 0x1234, true},
		{"descriptor short", []byte{0x72, 0x05, 0x20}, false, 0, 0, 0, 0, false},
		{"descriptor lying length", []byte{0x72, 0x05, 0x20, 0, 0, 0, 0, 200, 0x00, 0x0a}, true, SenseIllegalRequest, 0x20, 0, 0, false},
		{"empty", nil, false, 0, 0, 0, 0, false},
		{"unknown format", []byte{0x7f, 1, 2, 3}, false, 0, 0, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, asc, ascq, info, iv, ok := decodeSense(tc.in)
			if ok != tc.ok || key != tc.key || asc != tc.asc || ascq != tc.ascq || info != tc.info || iv != tc.infoValid {
				t.Fatalf("decodeSense = %v %x %x %x %v %v", key, asc, ascq, info, iv, ok)
			}
		})
	}
	e := senseFromResponse("WRITE(16) lba 8 blocks 1", statusCheckCondition, append([]byte{0, 18}, fixedSense(SenseDataProtect, 0x27, 0)...))
	if !strings.Contains(e.Error(), "DATA PROTECT") || !strings.Contains(e.Error(), "write protected") {
		t.Fatalf("error %q", e)
	}
	if e := senseFromResponse("X", statusBusy, nil); e.Error() != "X: BUSY" {
		t.Fatalf("busy: %q", e)
	}
}

func FuzzDecodeSense(f *testing.F) {
	f.Add(append([]byte{0, 18}, fixedSense(SenseMediumError, 0x11, 0)...))
	f.Add([]byte{0, 20, 0x72, 0x03, 0x11, 0x00, 0, 0, 0, 12, 0x00, 0x0a, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34})
	f.Add([]byte{0xff, 0xff, 0x72})
	f.Fuzz(func(t *testing.T, b []byte) {
		e := senseFromResponse("READ", statusCheckCondition, b)
		_ = e.Error()
	})
}

func TestCHAPResponse(t *testing.T) {
	// MD5(0x07 || "secret-12345" || challenge), computed with Python's hashlib.
	name, r, err := chapAnswer(CHAP{Username: "u", Secret: "secret-12345"}, "7", "0x00112233445566778899aabbccddeeff", nil)
	if err != nil || name != "u" || r != "0x4d722347bb2b190f43ca63a03ac76f62" {
		t.Fatalf("chapAnswer = %q %q %v", name, r, err)
	}
	// The same challenge in base64.
	_, r2, err := chapAnswer(CHAP{Secret: "secret-12345"}, "7", "0bABEiM0RVZneImaq7zN3u/w==", nil)
	if err != nil || r2 != r {
		t.Fatalf("base64 challenge: %q %v", r2, err)
	}
	ours, _ := hex.DecodeString("00112233445566778899aabbccddeeff")
	if _, _, err := chapAnswer(CHAP{Secret: "s"}, "7", "0x00112233445566778899aabbccddeeff", ours); err == nil {
		t.Fatal("a reflected challenge was answered")
	}
	for _, bad := range [][2]string{{"300", "0x01"}, {"x", "0x01"}, {"1", "01"}, {"1", "0xzz"}, {"1", "0x"}, {"1", "0b!!"}} {
		if _, _, err := chapAnswer(CHAP{Secret: "s"}, bad[0], bad[1], nil); err == nil {
			t.Errorf("CHAP_I=%s CHAP_C=%s accepted", bad[0], bad[1])
		}
	}
	if err := chapVerify(CHAP{Username: "t", Secret: "secret-12345"}, 7, ours, "t", r); err != nil {
		t.Fatal(err)
	}
	if err := chapVerify(CHAP{Username: "t", Secret: "other"}, 7, ours, "t", r); err == nil {
		t.Fatal("wrong mutual secret verified")
	}
}

func FuzzCHAPAnswer(f *testing.F) {
	f.Add("7", "0x00112233")
	f.Add("255", "0bAAEC")
	f.Fuzz(func(t *testing.T, id, chal string) {
		chapAnswer(CHAP{Username: "u", Secret: "secret"}, id, chal, []byte{1})
	})
}

func TestCapacityAndInquiry(t *testing.T) {
	b := make([]byte, 32)
	b[7], b[10] = 99, 2 // last LBA 99, block size 512
	if n, bs, err := parseCapacity16(b); n != 100 || bs != 512 || err != nil {
		t.Fatalf("parseCapacity16 = %d %d %v", n, bs, err)
	}
	b[10], b[11] = 0, 3
	if _, _, err := parseCapacity16(b); err == nil {
		t.Fatal("block size 3 accepted")
	}
	if _, _, needs16, err := parseCapacity10([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 2, 0}); !needs16 || err != nil {
		t.Fatal("READ CAPACITY(10) overflow not detected")
	}
	if _, _, err := checkInquiry([]byte{0x7f}, 3); err == nil {
		t.Fatal("absent LUN accepted")
	}
	if _, _, err := checkInquiry([]byte{0x05}, 1); err == nil {
		t.Fatal("CD-ROM accepted as a disk")
	}
	if c := rwCmd(true, 1<<32, 8, nil); c.cdb[0] != opWrite16 {
		t.Fatalf("LBA 2^32 used %x", c.cdb[0])
	}
	if c := rwCmd(false, 10, 0x10000, nil); c.cdb[0] != opRead16 {
		t.Fatalf("65536 blocks used %x", c.cdb[0])
	}
	if c := rwCmd(false, 10, 8, nil); c.cdb[0] != opRead10 || c.cdb[5] != 10 || c.cdb[8] != 8 {
		t.Fatalf("READ(10) cdb %x", c.cdb)
	}
	if got := redirectAddr("10.0.0.1:3261,1"); got != "10.0.0.1:3261" {
		t.Fatal(got)
	}
	if got := redirectAddr("[::1],1"); got != "[::1]:3260" {
		t.Fatal(got)
	}
}

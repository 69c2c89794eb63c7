package initiator

import (
	"bytes"
	"crypto/md5"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// CHAP holds one direction of CHAP credentials (RFC 7143 section 12.1.3, RFC 1994).
type CHAP struct {
	Username string
	Secret   string
}

func (c CHAP) enabled() bool { return c.Username != "" || c.Secret != "" }

// chapResponse computes MD5(identifier || secret || challenge).
func chapResponse(id byte, secret string, challenge []byte) []byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}

// decodeBinary decodes an iSCSI binary value: "0x…" hex or "0b…" base64 (RFC 7143 5.1).
func decodeBinary(v string) ([]byte, error) {
	switch {
	case len(v) >= 2 && (v[:2] == "0x" || v[:2] == "0X"):
		s := v[2:]
		if len(s)%2 == 1 {
			s = "0" + s
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("hex value %q: %w", v, err)
		}
		return b, nil
	case len(v) >= 2 && (v[:2] == "0b" || v[:2] == "0B"):
		b, err := base64.StdEncoding.DecodeString(v[2:])
		if err != nil {
			b, err = base64.RawStdEncoding.DecodeString(v[2:])
		}
		if err != nil {
			return nil, fmt.Errorf("base64 value %q: %w", v, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("binary value %q: want 0x or 0b prefix", v)
}

func encodeHex(b []byte) string { return "0x" + hex.EncodeToString(b) }

// chapAnswer builds CHAP_N and CHAP_R for the target's CHAP_I and CHAP_C. ours is the
// challenge we sent for mutual CHAP (nil when not mutual): a target that reflects it back
// is refused.
func chapAnswer(cred CHAP, id, challenge string, ours []byte) (name, resp string, err error) {
	n, err := strconv.ParseUint(strings.TrimSpace(id), 0, 8)
	if err != nil {
		return "", "", fmt.Errorf("CHAP_I %q: %w", id, err)
	}
	c, err := decodeBinary(challenge)
	if err != nil {
		return "", "", fmt.Errorf("CHAP_C: %w", err)
	}
	if len(c) == 0 {
		return "", "", errors.New("CHAP_C: empty challenge")
	}
	if ours != nil && bytes.Equal(c, ours) {
		return "", "", errors.New("CHAP_C: target reflected our own challenge")
	}
	return cred.Username, encodeHex(chapResponse(byte(n), cred.Secret, c)), nil
}

// chapVerify checks the target's CHAP_N and CHAP_R for mutual CHAP.
func chapVerify(cred CHAP, id byte, challenge []byte, name, resp string) error {
	if name != cred.Username {
		return fmt.Errorf("mutual CHAP: target name %q, want %q", name, cred.Username)
	}
	r, err := decodeBinary(resp)
	if err != nil {
		return fmt.Errorf("mutual CHAP: CHAP_R: %w", err)
	}
	want := chapResponse(id, cred.Secret, challenge)
	if subtle.ConstantTimeCompare(r, want) != 1 {
		return errors.New("mutual CHAP: target response does not match the mutual secret")
	}
	return nil
}

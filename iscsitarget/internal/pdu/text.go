package pdu

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// KV is one key=value pair of a login or text data segment.
type KV struct {
	Key, Value string
}

// Special values of RFC 7143 6.2.
const (
	ValueReject        = "Reject"
	ValueIrrelevant    = "Irrelevant"
	ValueNotUnderstood = "NotUnderstood"
	ValueNone          = "None"
)

// Text limits (RFC 7143 6.1): key names are at most 63 bytes; values are
// at most 255 bytes except binary CHAP values, which we allow up to 8192.
const (
	MaxKeyLength   = 63
	MaxValueLength = 8192
)

// ErrText marks a malformed text data segment.
var ErrText = errors.New("iscsi: malformed text")

// ParseText splits a data segment into key=value pairs in order. Pairs
// are separated by NUL; the last NUL may be missing; empty pairs (padding)
// are skipped. A key sent twice is an error (RFC 7143 6.1).
func ParseText(data []byte) ([]KV, error) {
	return parseText(data, false)
}

// ParseTextRepeated is ParseText for the one text that may repeat keys: a
// SendTargets answer, where every TargetName is followed by its
// TargetAddress keys (RFC 7143 appendix C). Pairs come back in order.
func ParseTextRepeated(data []byte) ([]KV, error) {
	return parseText(data, true)
}

func parseText(data []byte, repeats bool) ([]KV, error) {
	var out []KV
	seen := map[string]bool{}
	for len(data) > 0 {
		var pair []byte
		if i := bytes.IndexByte(data, 0); i >= 0 {
			pair, data = data[:i], data[i+1:]
		} else {
			pair, data = data, nil
		}
		if len(pair) == 0 {
			continue
		}
		eq := bytes.IndexByte(pair, '=')
		if eq < 0 {
			return nil, fmt.Errorf("%w: %q has no '='", ErrText, truncate(pair))
		}
		k, v := string(pair[:eq]), string(pair[eq+1:])
		if err := checkKey(k); err != nil {
			return nil, err
		}
		if len(v) > MaxValueLength {
			return nil, fmt.Errorf("%w: value of %s is %d bytes", ErrText, k, len(v))
		}
		if !repeats && seen[k] {
			return nil, fmt.Errorf("%w: key %s sent twice", ErrText, k)
		}
		seen[k] = true
		out = append(out, KV{k, v})
	}
	return out, nil
}

func truncate(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

func checkKey(k string) error {
	if k == "" || len(k) > MaxKeyLength {
		return fmt.Errorf("%w: key length %d", ErrText, len(k))
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '-', c == '+', c == '@', c == '_':
		default:
			return fmt.Errorf("%w: key %q has byte 0x%02x", ErrText, k, c)
		}
	}
	return nil
}

// EncodeText joins pairs as key=value\0 ... .
func EncodeText(kvs []KV) []byte {
	var b []byte
	for _, kv := range kvs {
		b = append(b, kv.Key...)
		b = append(b, '=')
		b = append(b, kv.Value...)
		b = append(b, 0)
	}
	return b
}

// Lookup returns the value of key in kvs.
func Lookup(kvs []KV, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

// ParseBool parses a boolean-value: exactly "Yes" or "No".
func ParseBool(v string) (bool, error) {
	switch v {
	case "Yes":
		return true, nil
	case "No":
		return false, nil
	}
	return false, fmt.Errorf("%w: %q is not Yes or No", ErrText, v)
}

// FormatBool is "Yes" or "No".
func FormatBool(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

// ParseNumber parses a numerical-value: decimal, or hexadecimal with a
// 0x/0X prefix (RFC 7143 6.1), at most 64 bits.
func ParseNumber(v string) (uint64, error) {
	if v == "" {
		return 0, fmt.Errorf("%w: empty number", ErrText)
	}
	if len(v) > 2 && (v[:2] == "0x" || v[:2] == "0X") {
		n, err := strconv.ParseUint(v[2:], 16, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: number %q", ErrText, v)
		}
		return n, nil
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, fmt.Errorf("%w: number %q", ErrText, v)
		}
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: number %q", ErrText, v)
	}
	return n, nil
}

// ParseNumberIn parses a number and checks lo <= n <= hi.
func ParseNumberIn(v string, lo, hi uint64) (uint64, error) {
	n, err := ParseNumber(v)
	if err != nil {
		return 0, err
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%w: %d outside %d..%d", ErrText, n, lo, hi)
	}
	return n, nil
}

// ParseRange parses a numeric range "a~b" with a <= b.
func ParseRange(v string) (lo, hi uint64, err error) {
	a, b, ok := strings.Cut(v, "~")
	if !ok {
		return 0, 0, fmt.Errorf("%w: range %q has no '~'", ErrText, v)
	}
	if lo, err = ParseNumber(a); err != nil {
		return 0, 0, err
	}
	if hi, err = ParseNumber(b); err != nil {
		return 0, 0, err
	}
	if lo > hi {
		return 0, 0, fmt.Errorf("%w: range %q is reversed", ErrText, v)
	}
	return lo, hi, nil
}

// ParseList splits a list-of-values on commas; empty elements are errors.
func ParseList(v string) ([]string, error) {
	parts := strings.Split(v, ",")
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("%w: empty element in list %q", ErrText, v)
		}
	}
	return parts, nil
}

// SelectFromList answers a list offer: the first offered value that we
// support, in the offerer's order of preference; ok is false if none.
func SelectFromList(offer string, supported ...string) (string, bool) {
	vals, err := ParseList(offer)
	if err != nil {
		return "", false
	}
	for _, v := range vals {
		for _, s := range supported {
			if v == s {
				return v, true
			}
		}
	}
	return "", false
}

// NegotiateAnd is the result of a boolean negotiated with the AND function
// (ImmediateData, DataPDUInOrder...): Yes only if both say Yes.
func NegotiateAnd(ours, theirs bool) bool { return ours && theirs }

// NegotiateOr is the result of a boolean negotiated with OR (InitialR2T).
func NegotiateOr(ours, theirs bool) bool { return ours || theirs }

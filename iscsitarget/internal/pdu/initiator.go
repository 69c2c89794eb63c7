package pdu

import (
	"bytes"
	"fmt"
)

// ParseTextRepeated is ParseText for the one text that may repeat keys: a SendTargets
// answer, where every TargetName is followed by its TargetAddress keys (RFC 7143 appendix
// C). Pairs come back in order.
func ParseTextRepeated(data []byte) ([]KV, error) {
	var out []KV
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
		out = append(out, KV{k, v})
	}
	return out, nil
}

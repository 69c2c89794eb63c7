package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Opcodes (RFC 1350, RFC 2347's OACK).
const (
	opRRQ   = 1
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// Error codes (RFC 1350, RFC 2347's 8).
const (
	codeUndefined   = 0 // see the message: busy, internal errors
	codeNotFound    = 1
	codeAccess      = 2
	codeIllegalOp   = 4
	codeUnknownTID  = 5
	codeOptionsDeny = 8
)

// Option bounds: RFC 2348 (blksize), RFC 2349 (timeout), RFC 7440
// (windowsize).
const (
	minBlockSize  = 8
	maxBlockSize  = 65464
	maxTimeoutOpt = 255
	// maxWindow caps the windowsize the server answers (RFC 7440 lets
	// it answer less than asked): a larger window only overruns the
	// receiver's socket buffer and is resent from its first block.
	maxWindow = 64
)

// request is a parsed RRQ or WRQ.
type request struct {
	op   uint16
	file string
	mode string // lower case: "octet" or "netascii"
	// opts holds the options the client asked for, names lower case, in
	// the order sent (an option sent twice counts once, the first).
	opts []option
}

type option struct{ name, value string }

// parseRequest reads an RRQ or WRQ: opcode, file name, mode and option
// pairs, each NUL-terminated.
func parseRequest(p []byte) (request, error) {
	if len(p) < 2 {
		return request{}, errors.New("short packet")
	}
	r := request{op: binary.BigEndian.Uint16(p)}
	if r.op != opRRQ && r.op != opWRQ {
		return r, fmt.Errorf("opcode %d is not a request", r.op)
	}
	fields := bytes.Split(p[2:], []byte{0})
	// A well-formed request ends with NUL, so the last field is empty.
	if len(fields) < 3 || len(fields[len(fields)-1]) != 0 {
		return r, errors.New("malformed request: file name and mode must end with NUL")
	}
	fields = fields[:len(fields)-1]
	r.file, r.mode = string(fields[0]), strings.ToLower(string(fields[1]))
	rest := fields[2:]
	if len(rest)%2 != 0 {
		return r, errors.New("malformed request: option without a value")
	}
	seen := map[string]bool{}
	for i := 0; i < len(rest); i += 2 {
		name := strings.ToLower(string(rest[i]))
		if seen[name] {
			continue
		}
		seen[name] = true
		r.opts = append(r.opts, option{name, string(rest[i+1])})
	}
	return r, nil
}

// errorPacket is an ERROR with code and msg.
func errorPacket(code uint16, msg string) []byte {
	p := make([]byte, 4, 5+len(msg))
	binary.BigEndian.PutUint16(p, opERROR)
	binary.BigEndian.PutUint16(p[2:], code)
	p = append(p, msg...)
	return append(p, 0)
}

// oackPacket is an OACK carrying opts.
func oackPacket(opts []option) []byte {
	p := []byte{0, opOACK}
	for _, o := range opts {
		p = append(append(p, o.name...), 0)
		p = append(append(p, o.value...), 0)
	}
	return p
}

// parseAck returns the block number of an ACK, or the client's error of
// an ERROR; ok is false for anything else.
func parseAck(p []byte) (block uint16, clientErr error, ok bool) {
	if len(p) < 4 {
		return 0, nil, false
	}
	switch binary.BigEndian.Uint16(p) {
	case opACK:
		return binary.BigEndian.Uint16(p[2:]), nil, true
	case opERROR:
		msg := strings.TrimRight(string(p[4:]), "\x00")
		return 0, fmt.Errorf("client sent error %d: %q", binary.BigEndian.Uint16(p[2:]), msg), true
	}
	return 0, nil, false
}

// params are a transfer's negotiated values.
type params struct {
	blksize int
	window  int
	// timeoutSecs is the client's timeout option; 0: the server's.
	timeoutSecs int
}

// negotiate applies the options of r (RFC 2347) for a file of size bytes
// (-1 unknown): it returns the transfer's params and the options to
// acknowledge in an OACK (none: no OACK, data starts at once). Unknown
// options are ignored; a known option with an unusable value refuses the
// request with error 8, as tftpd-hpa does. maxBlk caps blksize.
func negotiate(r request, size int64, maxBlk int) (params, []option, error) {
	p := params{blksize: 512, window: 1}
	var ack []option
	for _, o := range r.opts {
		switch o.name {
		case "blksize":
			n, err := optInt(o, minBlockSize, -1)
			if err != nil {
				return p, nil, err
			}
			p.blksize = min(n, maxBlk)
			ack = append(ack, option{o.name, strconv.Itoa(p.blksize)})
		case "timeout":
			n, err := optInt(o, 1, maxTimeoutOpt)
			if err != nil {
				return p, nil, err
			}
			p.timeoutSecs = n
			ack = append(ack, o)
		case "windowsize":
			n, err := optInt(o, 1, -1)
			if err != nil {
				return p, nil, err
			}
			p.window = min(n, maxWindow)
			ack = append(ack, option{o.name, strconv.Itoa(p.window)})
		case "tsize":
			// RFC 2349: the client sends 0, the server answers the
			// size; unknown sizes (netascii) leave the option out.
			if size >= 0 {
				ack = append(ack, option{o.name, strconv.FormatInt(size, 10)})
			}
		}
	}
	return p, ack, nil
}

// optInt parses o's value as a decimal in lo..hi (hi < 0: no upper
// bound; values above one are the caller's to cap).
func optInt(o option, lo, hi int) (int, error) {
	n, err := strconv.Atoi(o.value)
	if err != nil || n < lo || (hi >= 0 && n > hi) {
		bound := fmt.Sprintf("%d..%d", lo, hi)
		if hi < 0 {
			bound = fmt.Sprintf("at least %d", lo)
		}
		return 0, &Error{Code: codeOptionsDeny, Msg: fmt.Sprintf("unsupported option(s) requested: %s %q, want %s", o.name, o.value, bound)}
	}
	return n, nil
}

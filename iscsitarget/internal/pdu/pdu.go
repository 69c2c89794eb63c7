// Package pdu encodes and decodes iSCSI protocol data units (RFC 7143):
// the 48-byte basic header segment with typed accessors, the optional
// additional header segments, the padded data segment, CRC32C header and
// data digests, and the text key=value format of login and text PDUs.
//
// The same codec serves the target and the initiator; nothing here keeps
// state between calls.
package pdu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
)

// Opcode is the six-bit iSCSI opcode of byte 0.
type Opcode uint8

// Initiator opcodes (RFC 7143 11.1.1).
const (
	OpNOPOut       Opcode = 0x00
	OpSCSICommand  Opcode = 0x01
	OpTaskMgmtReq  Opcode = 0x02
	OpLoginReq     Opcode = 0x03
	OpTextReq      Opcode = 0x04
	OpDataOut      Opcode = 0x05
	OpLogoutReq    Opcode = 0x06
	OpSNACKReq     Opcode = 0x10
	OpNOPIn        Opcode = 0x20
	OpSCSIResponse Opcode = 0x21
	OpTaskMgmtResp Opcode = 0x22
	OpLoginResp    Opcode = 0x23
	OpTextResp     Opcode = 0x24
	OpDataIn       Opcode = 0x25
	OpLogoutResp   Opcode = 0x26
	OpR2T          Opcode = 0x31
	OpAsync        Opcode = 0x32
	OpReject       Opcode = 0x3f
)

var opNames = map[Opcode]string{
	OpNOPOut: "NOP-Out", OpSCSICommand: "SCSI Command", OpTaskMgmtReq: "Task Management Request",
	OpLoginReq: "Login Request", OpTextReq: "Text Request", OpDataOut: "Data-Out",
	OpLogoutReq: "Logout Request", OpSNACKReq: "SNACK Request", OpNOPIn: "NOP-In",
	OpSCSIResponse: "SCSI Response", OpTaskMgmtResp: "Task Management Response",
	OpLoginResp: "Login Response", OpTextResp: "Text Response", OpDataIn: "Data-In",
	OpLogoutResp: "Logout Response", OpR2T: "R2T", OpAsync: "Asynchronous Message", OpReject: "Reject",
}

func (o Opcode) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return fmt.Sprintf("opcode 0x%02x", uint8(o))
}

// Sizes and limits.
const (
	BHSLen = 48
	// MaxDataSegmentLength is what the 24-bit DataSegmentLength can carry.
	MaxDataSegmentLength = 1<<24 - 1
	// DefaultMaxRecvDataSegmentLength is RFC 7143's default for
	// MaxRecvDataSegmentLength, used by Read when Options leaves it zero.
	DefaultMaxRecvDataSegmentLength = 8192
	// MaxAHSLength is what the 8-bit TotalAHSLength (in words) can carry.
	MaxAHSLength = 255 * 4
)

// Flag bits of byte 1.
const (
	FlagFinal    = 0x80 // F: final PDU of a sequence
	FlagRead     = 0x40 // R: SCSI Command expects Data-In
	FlagWrite    = 0x20 // W: SCSI Command carries Data-Out
	FlagTransit  = 0x80 // T: Login transit
	FlagContinue = 0x40 // C: Login/Text continues in the next PDU
	FlagAck      = 0x40 // A: Data-In acknowledge
	FlagOverflow = 0x04 // O: residual overflow (Data-In, SCSI Response)
	// FlagUnderflow is U: residual underflow (Data-In, SCSI Response).
	FlagUnderflow = 0x02
	// FlagStatus is S: Data-In carries the SCSI status.
	FlagStatus = 0x01
	// FlagBidiOverflow and FlagBidiUnderflow are o and u of a SCSI Response.
	FlagBidiOverflow  = 0x10
	FlagBidiUnderflow = 0x08
)

// Login stages (CSG/NSG).
const (
	StageSecurity    = 0
	StageOperational = 1
	StageFullFeature = 3
)

// BHS is the 48-byte basic header segment. Accessors name the field at
// each offset; a field that means different things for different opcodes
// has one accessor per meaning (CmdSN and StatSN share bytes 24-27).
type BHS [BHSLen]byte

func (h *BHS) u32(off int) uint32       { return binary.BigEndian.Uint32(h[off:]) }
func (h *BHS) put32(off int, v uint32)  { binary.BigEndian.PutUint32(h[off:], v) }
func (h *BHS) u16(off int) uint16       { return binary.BigEndian.Uint16(h[off:]) }
func (h *BHS) put16(off int, v uint16)  { binary.BigEndian.PutUint16(h[off:], v) }
func (h *BHS) bit(off int, m byte) bool { return h[off]&m != 0 }
func (h *BHS) setBit(off int, m byte, on bool) {
	if on {
		h[off] |= m
	} else {
		h[off] &^= m
	}
}

// Opcode is byte 0 without the immediate bit.
func (h *BHS) Opcode() Opcode { return Opcode(h[0] & 0x3f) }

// SetOpcode sets the opcode, keeping the immediate bit.
func (h *BHS) SetOpcode(o Opcode) { h[0] = h[0]&0x40 | byte(o)&0x3f }

// Immediate is the I bit of byte 0.
func (h *BHS) Immediate() bool       { return h.bit(0, 0x40) }
func (h *BHS) SetImmediate(on bool)  { h.setBit(0, 0x40, on) }
func (h *BHS) Flags() byte           { return h[1] }
func (h *BHS) SetFlags(f byte)       { h[1] = f }
func (h *BHS) Final() bool           { return h.bit(1, FlagFinal) }
func (h *BHS) SetFinal(on bool)      { h.setBit(1, FlagFinal, on) }
func (h *BHS) Continue() bool        { return h.bit(1, FlagContinue) }
func (h *BHS) SetContinue(on bool)   { h.setBit(1, FlagContinue, on) }
func (h *BHS) Transit() bool         { return h.bit(1, FlagTransit) }
func (h *BHS) SetTransit(on bool)    { h.setBit(1, FlagTransit, on) }
func (h *BHS) ReadFlag() bool        { return h.bit(1, FlagRead) }
func (h *BHS) SetReadFlag(on bool)   { h.setBit(1, FlagRead, on) }
func (h *BHS) WriteFlag() bool       { return h.bit(1, FlagWrite) }
func (h *BHS) SetWriteFlag(on bool)  { h.setBit(1, FlagWrite, on) }
func (h *BHS) TaskAttr() byte        { return h[1] & 0x07 }
func (h *BHS) SetTaskAttr(a byte)    { h[1] = h[1]&^0x07 | a&0x07 }
func (h *BHS) StatusFlag() bool      { return h.bit(1, FlagStatus) }
func (h *BHS) SetStatusFlag(on bool) { h.setBit(1, FlagStatus, on) }

// CSG and NSG are the login current and next stages in byte 1.
func (h *BHS) CSG() byte        { return h[1] >> 2 & 3 }
func (h *BHS) NSG() byte        { return h[1] & 3 }
func (h *BHS) SetCSG(s byte)    { h[1] = h[1]&^0x0c | (s&3)<<2 }
func (h *BHS) SetNSG(s byte)    { h[1] = h[1]&^0x03 | s&3 }
func (h *BHS) TMFunction() byte { return h[1] & 0x7f }

// SetTMFunction sets the task management function; the F bit is always set.
func (h *BHS) SetTMFunction(f byte) { h[1] = 0x80 | f&0x7f }

// LogoutReason is the reason code of a Logout Request.
func (h *BHS) LogoutReason() byte { return h[1] & 0x7f }

// SetLogoutReason sets the reason code; the F bit is always set.
func (h *BHS) SetLogoutReason(r byte) { h[1] = 0x80 | r&0x7f }

// Response is byte 2 of SCSI Response, TMF Response and Logout Response.
func (h *BHS) Response() byte     { return h[2] }
func (h *BHS) SetResponse(r byte) { h[2] = r }

// RejectReason is byte 2 of a Reject.
func (h *BHS) RejectReason() byte     { return h[2] }
func (h *BHS) SetRejectReason(r byte) { h[2] = r }

// Status is the SCSI status in byte 3.
func (h *BHS) Status() byte     { return h[3] }
func (h *BHS) SetStatus(s byte) { h[3] = s }

// VersionMax and VersionMin (request) / VersionActive (response) of login.
func (h *BHS) VersionMax() byte        { return h[2] }
func (h *BHS) SetVersionMax(v byte)    { h[2] = v }
func (h *BHS) VersionMin() byte        { return h[3] }
func (h *BHS) SetVersionMin(v byte)    { h[3] = v }
func (h *BHS) VersionActive() byte     { return h[3] }
func (h *BHS) SetVersionActive(v byte) { h[3] = v }

// AHSLength is TotalAHSLength in bytes (the wire carries 4-byte words).
func (h *BHS) AHSLength() int { return int(h[4]) * 4 }

// DataSegmentLength is the 24-bit length of the data segment, unpadded.
func (h *BHS) DataSegmentLength() uint32 { return uint32(h[5])<<16 | uint32(h[6])<<8 | uint32(h[7]) }

// SetDataSegmentLength sets the 24-bit field; larger values are truncated.
func (h *BHS) SetDataSegmentLength(n uint32) {
	h[5], h[6], h[7] = byte(n>>16), byte(n>>8), byte(n)
}

// LUN is bytes 8-15 as one big-endian number (SAM LUN structure).
func (h *BHS) LUN() uint64     { return binary.BigEndian.Uint64(h[8:]) }
func (h *BHS) SetLUN(l uint64) { binary.BigEndian.PutUint64(h[8:], l) }

// ISID is the 6-byte initiator session ID of login and its response.
func (h *BHS) ISID() [6]byte     { return [6]byte(h[8:14]) }
func (h *BHS) SetISID(v [6]byte) { copy(h[8:14], v[:]) }
func (h *BHS) TSIH() uint16      { return h.u16(14) }
func (h *BHS) SetTSIH(v uint16)  { h.put16(14, v) }

// ITT is the initiator task tag.
func (h *BHS) ITT() uint32     { return h.u32(16) }
func (h *BHS) SetITT(v uint32) { h.put32(16, v) }

// TTT is the target transfer tag (NOP, Data-Out/In, R2T).
func (h *BHS) TTT() uint32     { return h.u32(20) }
func (h *BHS) SetTTT(v uint32) { h.put32(20, v) }

// ExpectedDataTransferLength of a SCSI Command.
func (h *BHS) ExpectedDataTransferLength() uint32     { return h.u32(20) }
func (h *BHS) SetExpectedDataTransferLength(v uint32) { h.put32(20, v) }

// CID is the connection ID of login and logout requests.
func (h *BHS) CID() uint16     { return h.u16(20) }
func (h *BHS) SetCID(v uint16) { h.put16(20, v) }

// RefTaskTag is the referenced task tag of a TMF request.
func (h *BHS) RefTaskTag() uint32     { return h.u32(20) }
func (h *BHS) SetRefTaskTag(v uint32) { h.put32(20, v) }

// CmdSN (requests) and StatSN (responses) share bytes 24-27.
func (h *BHS) CmdSN() uint32      { return h.u32(24) }
func (h *BHS) SetCmdSN(v uint32)  { h.put32(24, v) }
func (h *BHS) StatSN() uint32     { return h.u32(24) }
func (h *BHS) SetStatSN(v uint32) { h.put32(24, v) }

// ExpStatSN (requests) and ExpCmdSN (responses) share bytes 28-31.
func (h *BHS) ExpStatSN() uint32        { return h.u32(28) }
func (h *BHS) SetExpStatSN(v uint32)    { h.put32(28, v) }
func (h *BHS) ExpCmdSN() uint32         { return h.u32(28) }
func (h *BHS) SetExpCmdSN(v uint32)     { h.put32(28, v) }
func (h *BHS) MaxCmdSN() uint32         { return h.u32(32) }
func (h *BHS) SetMaxCmdSN(v uint32)     { h.put32(32, v) }
func (h *BHS) RefCmdSN() uint32         { return h.u32(32) }
func (h *BHS) SetRefCmdSN(v uint32)     { h.put32(32, v) }
func (h *BHS) ExpDataSN() uint32        { return h.u32(36) }
func (h *BHS) SetExpDataSN(v uint32)    { h.put32(36, v) }
func (h *BHS) DataSN() uint32           { return h.u32(36) }
func (h *BHS) SetDataSN(v uint32)       { h.put32(36, v) }
func (h *BHS) R2TSN() uint32            { return h.u32(36) }
func (h *BHS) SetR2TSN(v uint32)        { h.put32(36, v) }
func (h *BHS) BufferOffset() uint32     { return h.u32(40) }
func (h *BHS) SetBufferOffset(v uint32) { h.put32(40, v) }

// BidiReadResidualCount of a SCSI Response.
func (h *BHS) BidiReadResidualCount() uint32     { return h.u32(40) }
func (h *BHS) SetBidiReadResidualCount(v uint32) { h.put32(40, v) }

// ResidualCount of Data-In and SCSI Response.
func (h *BHS) ResidualCount() uint32     { return h.u32(44) }
func (h *BHS) SetResidualCount(v uint32) { h.put32(44, v) }

// DesiredDataTransferLength of an R2T.
func (h *BHS) DesiredDataTransferLength() uint32     { return h.u32(44) }
func (h *BHS) SetDesiredDataTransferLength(v uint32) { h.put32(44, v) }

// StatusClass and StatusDetail of a Login Response.
func (h *BHS) StatusClass() byte        { return h[36] }
func (h *BHS) StatusDetail() byte       { return h[37] }
func (h *BHS) SetLoginStatus(c, d byte) { h[36], h[37] = c, d }

// Time2Wait and Time2Retain of a Logout Response.
func (h *BHS) Time2Wait() uint16       { return h.u16(40) }
func (h *BHS) SetTime2Wait(v uint16)   { h.put16(40, v) }
func (h *BHS) Time2Retain() uint16     { return h.u16(42) }
func (h *BHS) SetTime2Retain(v uint16) { h.put16(42, v) }

// AsyncEvent and AsyncVCode of an Asynchronous Message; Parameter1-3 follow.
func (h *BHS) AsyncEvent() byte                  { return h[36] }
func (h *BHS) SetAsyncEvent(e byte)              { h[36] = e }
func (h *BHS) AsyncVCode() byte                  { return h[37] }
func (h *BHS) SetAsyncVCode(c byte)              { h[37] = c }
func (h *BHS) AsyncParameter(i int) uint16       { return h.u16(38 + 2*i) }
func (h *BHS) SetAsyncParameter(i int, v uint16) { h.put16(38+2*i, v) }

// CDB is the 16-byte command descriptor block of a SCSI Command (bytes
// 32-47); the slice aliases the header.
func (h *BHS) CDB() []byte { return h[32:48] }

// PDU is one protocol data unit. Data is unpadded; WriteTo pads it and
// sets TotalAHSLength and DataSegmentLength from AHS and Data.
type PDU struct {
	BHS
	AHS  []byte // additional header segments, a multiple of 4 bytes
	Data []byte
}

func (p *PDU) String() string {
	return fmt.Sprintf("%v itt=0x%08x len=%d", p.Opcode(), p.ITT(), len(p.Data))
}

// Options are the negotiated digests and the receive limit of a connection.
type Options struct {
	HeaderDigest bool // CRC32C over BHS and AHS
	DataDigest   bool // CRC32C over the padded data segment
	// MaxDataSegmentLength is the largest data segment Read accepts
	// (our MaxRecvDataSegmentLength). Zero means
	// DefaultMaxRecvDataSegmentLength; it is capped at MaxDataSegmentLength.
	MaxDataSegmentLength uint32
}

func (o Options) maxData() uint32 {
	switch {
	case o.MaxDataSegmentLength == 0:
		return DefaultMaxRecvDataSegmentLength
	case o.MaxDataSegmentLength > MaxDataSegmentLength:
		return MaxDataSegmentLength
	}
	return o.MaxDataSegmentLength
}

// Errors Read returns; callers branch on them (RFC 7143 7.8: a header
// digest error loses the PDU's framing only if the length is untrusted, a
// data digest error is answered with a Reject and the connection goes on).
var (
	ErrHeaderDigest = errors.New("iscsi: header digest mismatch")
	ErrDataDigest   = errors.New("iscsi: data digest mismatch")
	ErrTooLong      = errors.New("iscsi: data segment longer than allowed")
	ErrAHS          = errors.New("iscsi: malformed additional header segment")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C is the iSCSI digest of b.
func CRC32C(b ...[]byte) uint32 {
	var c uint32
	for _, s := range b {
		c = crc32.Update(c, castagnoli, s)
	}
	return c
}

func pad(n uint32) uint32 { return (4 - n%4) % 4 }

// Read reads one PDU. It checks the data segment length against
// opts before allocating. On ErrDataDigest the whole PDU has been consumed
// and is returned with the error, so the caller can reject it and go on.
// buf, if large enough, is reused for the data segment.
func Read(r io.Reader, opts Options) (*PDU, error) {
	p := &PDU{}
	if err := ReadInto(r, p, opts, nil); err != nil {
		if errors.Is(err, ErrDataDigest) {
			return p, err
		}
		return nil, err
	}
	return p, nil
}

// ReadInto is Read into a caller-owned PDU; the data segment goes into
// buf when cap(buf) is large enough (p.Data then aliases buf).
func ReadInto(r io.Reader, p *PDU, opts Options, buf []byte) error {
	if _, err := io.ReadFull(r, p.BHS[:]); err != nil {
		return err
	}
	ahsLen := p.BHS.AHSLength()
	p.AHS = nil
	if ahsLen > 0 {
		p.AHS = make([]byte, ahsLen)
		if _, err := io.ReadFull(r, p.AHS); err != nil {
			return unexpected(err)
		}
	}
	var word [4]byte
	if opts.HeaderDigest {
		if _, err := io.ReadFull(r, word[:]); err != nil {
			return unexpected(err)
		}
		if binary.LittleEndian.Uint32(word[:]) != CRC32C(p.BHS[:], p.AHS) {
			return ErrHeaderDigest
		}
	}
	n := p.BHS.DataSegmentLength()
	if n > opts.maxData() {
		return fmt.Errorf("%w: %d > %d (%v)", ErrTooLong, n, opts.maxData(), p.Opcode())
	}
	total := n + pad(n)
	var seg []byte
	if uint32(cap(buf)) >= total {
		seg = buf[:total]
	} else {
		seg = make([]byte, total)
	}
	if total > 0 {
		if _, err := io.ReadFull(r, seg); err != nil {
			return unexpected(err)
		}
	}
	p.Data = seg[:n]
	if opts.DataDigest && n > 0 {
		if _, err := io.ReadFull(r, word[:]); err != nil {
			return unexpected(err)
		}
		if binary.LittleEndian.Uint32(word[:]) != CRC32C(seg) {
			return ErrDataDigest
		}
	}
	return nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

var zeros [4]byte

// WriteTo writes p without digests; it implements io.WriterTo.
func (p *PDU) WriteTo(w io.Writer) (int64, error) { return Write(w, p, Options{}) }

// Write writes p with the digests opts asks for, in one write call (a
// writev on a net.Conn). It sets TotalAHSLength and DataSegmentLength.
func Write(w io.Writer, p *PDU, opts Options) (int64, error) {
	if len(p.AHS)%4 != 0 || len(p.AHS) > MaxAHSLength {
		return 0, fmt.Errorf("%w: length %d", ErrAHS, len(p.AHS))
	}
	if len(p.Data) > MaxDataSegmentLength {
		return 0, fmt.Errorf("%w: %d", ErrTooLong, len(p.Data))
	}
	p.BHS[4] = byte(len(p.AHS) / 4)
	n := uint32(len(p.Data))
	p.SetDataSegmentLength(n)
	var hd, dd [4]byte
	bufs := make(net.Buffers, 0, 6)
	bufs = append(bufs, p.BHS[:])
	if len(p.AHS) > 0 {
		bufs = append(bufs, p.AHS)
	}
	if opts.HeaderDigest {
		binary.LittleEndian.PutUint32(hd[:], CRC32C(p.BHS[:], p.AHS))
		bufs = append(bufs, hd[:])
	}
	if n > 0 {
		bufs = append(bufs, p.Data)
		if pd := pad(n); pd > 0 {
			bufs = append(bufs, zeros[:pd])
		}
		if opts.DataDigest {
			binary.LittleEndian.PutUint32(dd[:], CRC32C(p.Data, zeros[:pad(n)]))
			bufs = append(bufs, dd[:])
		}
	}
	return bufs.WriteTo(w)
}

// Marshal returns the wire bytes of p (with the digests opts asks for).
func Marshal(p *PDU, opts Options) ([]byte, error) {
	var b sliceWriter
	if _, err := Write(&b, p, opts); err != nil {
		return nil, err
	}
	return b, nil
}

type sliceWriter []byte

func (s *sliceWriter) Write(b []byte) (int, error) { *s = append(*s, b...); return len(b), nil }

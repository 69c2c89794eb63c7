package pdu

import (
	"encoding/binary"
	"fmt"
	"net"
)

// AppendBuffers appends the wire form of p (with the digests opts asks for) to bufs
// without copying its data segment, so that a sender can write many PDUs in one writev
// (an initiator's Data-Out sequence). Like Write it sets TotalAHSLength and
// DataSegmentLength; p and its Data must stay untouched until bufs is written.
func AppendBuffers(bufs net.Buffers, p *PDU, opts Options) (net.Buffers, error) {
	if len(p.AHS)%4 != 0 || len(p.AHS) > MaxAHSLength {
		return bufs, fmt.Errorf("%w: length %d", ErrAHS, len(p.AHS))
	}
	if len(p.Data) > MaxDataSegmentLength {
		return bufs, fmt.Errorf("%w: %d", ErrTooLong, len(p.Data))
	}
	p.BHS[4] = byte(len(p.AHS) / 4)
	n := uint32(len(p.Data))
	p.SetDataSegmentLength(n)
	bufs = append(bufs, p.BHS[:])
	if len(p.AHS) > 0 {
		bufs = append(bufs, p.AHS)
	}
	if opts.HeaderDigest {
		bufs = append(bufs, binary.LittleEndian.AppendUint32(nil, CRC32C(p.BHS[:], p.AHS)))
	}
	if n > 0 {
		bufs = append(bufs, p.Data)
		if pd := pad(n); pd > 0 {
			bufs = append(bufs, zeros[:pd])
		}
		if opts.DataDigest {
			bufs = append(bufs, binary.LittleEndian.AppendUint32(nil, CRC32C(p.Data, zeros[:pad(n)])))
		}
	}
	return bufs, nil
}

package scsi

import (
	"encoding/binary"
)

// Peripheral device types.
const (
	typeDisk       = 0x00
	typeController = 0x0c
	typeNoLUN      = 0x7f // qualifier 3, type 0x1f
)

// Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3.
var versionDescriptors = [...]uint16{0x00a0, 0x0960, 0x0460, 0x04c0}

func standardInquiry(devType byte) []byte {
	b := make([]byte, 96)
	b[0] = devType
	b[2] = 0x06        // SPC-4
	b[3] = 0x02 | 0x10 // response data format 2, HISUP
	b[4] = byte(len(b) - 5)
	b[7] = 0x02 // CMDQUE
	copy(b[8:16], "METALBED")
	product := "VIRTUAL-DISK    "
	if devType == typeController {
		product = "CONTROLLER      "
	}
	copy(b[16:32], product)
	copy(b[32:36], "0001")
	for i, v := range versionDescriptors {
		if devType != typeDisk && v == 0x04c0 {
			continue
		}
		binary.BigEndian.PutUint16(b[58+2*i:], v)
	}
	return b
}

// inquiryCheck validates the EVPD/CMDDT/page code combination.
func inquiryCheck(c *Command) (evpd bool, page byte, alloc uint32, bad *Result) {
	evpd = c.CDB[1]&0x01 != 0
	page = c.CDB[2]
	alloc = uint32(binary.BigEndian.Uint16(c.CDB[3:]))
	if c.CDB[1]&0xfe != 0 {
		r := invalidField(1)
		return evpd, page, alloc, &r
	}
	if !evpd && page != 0 {
		r := invalidField(2)
		return evpd, page, alloc, &r
	}
	return evpd, page, alloc, nil
}

func (lu *LU) inquiry(c *Command) Result {
	evpd, page, alloc, bad := inquiryCheck(c)
	if bad != nil {
		return *bad
	}
	if !evpd {
		return data(c, standardInquiry(typeDisk), alloc)
	}
	var p []byte
	switch page {
	case 0x00:
		p = vpd(typeDisk, 0x00, []byte{0x00, 0x80, 0x83, 0xb0, 0xb1})
	case 0x80:
		p = vpd(typeDisk, 0x80, []byte(lu.cfg.Serial))
	case 0x83:
		p = vpd(typeDisk, 0x83, deviceIdentification(lu.cfg.NAA, lu.cfg.Serial))
	case 0xb0:
		p = vpd(typeDisk, 0xb0, lu.blockLimits())
	case 0xb1:
		bdc := make([]byte, 0x3c)
		binary.BigEndian.PutUint16(bdc[0:], 1) // non-rotating medium
		p = vpd(typeDisk, 0xb1, bdc)
	default:
		return invalidField(2)
	}
	return data(c, p, alloc)
}

func vpd(devType, page byte, body []byte) []byte {
	b := make([]byte, 4+len(body))
	b[0] = devType
	b[1] = page
	binary.BigEndian.PutUint16(b[2:], uint16(len(body)))
	copy(b[4:], body)
	return b
}

func deviceIdentification(naa uint64, serial string) []byte {
	var b []byte
	// NAA designator: binary code set, LU association, type 3.
	b = append(b, 0x01, 0x03, 0x00, 0x08)
	b = binary.BigEndian.AppendUint64(b, naa&^(0xf<<60)|(0x3<<60))
	// T10 vendor ID designator: ASCII, LU association, type 1.
	t10 := append([]byte("METALBED"), serial...)
	b = append(b, 0x02, 0x01, 0x00, byte(len(t10)))
	return append(b, t10...)
}

func (lu *LU) blockLimits() []byte {
	b := make([]byte, 0x3c)
	b[0] = 0x01 // WSNZ: WRITE SAME with zero blocks is refused
	b[1] = maxCompareBlocks
	gran := uint16(1)
	if lu.bs < 4096 {
		gran = uint16(4096 / lu.bs)
	}
	binary.BigEndian.PutUint16(b[2:], gran)
	binary.BigEndian.PutUint32(b[4:], MaxTransferBytes/lu.bs)
	binary.BigEndian.PutUint32(b[8:], (1<<20)/lu.bs) // optimal transfer length
	binary.BigEndian.PutUint64(b[32:], maxWriteSameBlocks)
	return b
}

// inquiryController answers INQUIRY on LUN 0 (exists) or on a LUN that
// does not exist (peripheral qualifier 3).
func inquiryController(c *Command, exists bool) Result {
	evpd, page, alloc, bad := inquiryCheck(c)
	if bad != nil {
		return *bad
	}
	t := byte(typeController)
	if !exists {
		t = typeNoLUN
	}
	if !evpd {
		return data(c, standardInquiry(t), alloc)
	}
	var p []byte
	switch page {
	case 0x00:
		p = vpd(t, 0x00, []byte{0x00, 0x80, 0x83})
	case 0x80:
		p = vpd(t, 0x80, []byte("controller"))
	case 0x83:
		p = vpd(t, 0x83, []byte{0x02, 0x01, 0x00, 0x12, 'M', 'E', 'T', 'A', 'L', 'B', 'E', 'D', 'c', 'o', 'n', 't', 'r', 'o', 'l', 'l', 'e', 'r'})
	default:
		return invalidField(2)
	}
	return data(c, p, alloc)
}

// Mode pages: code, then the current values, then the changeable mask.
type modePage struct {
	code       byte
	current    []byte
	changeable []byte
}

func (lu *LU) modePages() []modePage {
	return []modePage{
		{0x01, []byte{0x01, 0x0a, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 12)},                                      // read-write error recovery: AWRE
		{0x08, append([]byte{0x08, 0x12, 0x04}, make([]byte, 17)...), append([]byte{0x08, 0x12}, make([]byte, 18)...)},     // caching: WCE
		{0x0a, []byte{0x0a, 0x0a, 0x02, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0}, append([]byte{0x0a, 0x0a}, make([]byte, 10)...)}, // control: GLTSD
		{0x1c, []byte{0x1c, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, append([]byte{0x1c, 0x0a}, make([]byte, 10)...)},          // informational exceptions
	}
}

func (lu *LU) modeSense(c *Command) Result {
	six := c.CDB[0] == OpModeSense6
	dbd := c.CDB[1]&0x08 != 0
	pc := c.CDB[2] >> 6
	code := c.CDB[2] & 0x3f
	sub := c.CDB[3]
	var alloc uint32
	if six {
		alloc = uint32(c.CDB[4])
	} else {
		alloc = uint32(binary.BigEndian.Uint16(c.CDB[7:]))
	}
	if pc == 3 {
		return checkCondition(Sense{Key: KeyIllegalRequest, ASC: ASCSavingNotSupported})
	}
	if sub != 0 && !(code == 0x3f && sub == 0xff) {
		return invalidField(3)
	}
	var pages []byte
	found := false
	for _, p := range lu.modePages() {
		if code != 0x3f && code != p.code {
			continue
		}
		found = true
		if pc == 1 {
			pages = append(pages, p.changeable...)
		} else {
			pages = append(pages, p.current...)
		}
	}
	if !found {
		return invalidField(2)
	}
	var desc []byte
	if !dbd {
		desc = make([]byte, 8)
		nb := lu.blocks
		if nb > 0xffffff {
			nb = 0xffffff
		}
		desc[1], desc[2], desc[3] = byte(nb>>16), byte(nb>>8), byte(nb)
		desc[5], desc[6], desc[7] = byte(lu.bs>>16), byte(lu.bs>>8), byte(lu.bs)
	}
	var hdr []byte
	if six {
		hdr = []byte{0, 0, 0x10, byte(len(desc))} // DPOFUA
		hdr[0] = byte(len(hdr) - 1 + len(desc) + len(pages))
	} else {
		hdr = make([]byte, 8)
		binary.BigEndian.PutUint16(hdr, uint16(len(hdr)-2+len(desc)+len(pages)))
		hdr[3] = 0x10
		binary.BigEndian.PutUint16(hdr[6:], uint16(len(desc)))
	}
	out := append(append(hdr, desc...), pages...)
	return data(c, out, alloc)
}

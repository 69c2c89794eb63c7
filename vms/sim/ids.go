package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// MAC is the default MAC address of a machine's NIC: MACIn with no
// testbed, as metalbed derived them before testbed IDs.
func MAC(name string, nic, salt int) net.HardwareAddr { return MACIn("", name, nic, salt) }

// MACIn is the MAC address of a machine's NIC in the testbed with ID
// testbed: locally administered 52:54:00:xx:xx:xx (the prefix QEMU and
// libvirt use), derived from the testbed ID, the machine name and the NIC
// index, so a machine keeps its MACs across restarts while node-0 of two
// testbeds differ. salt picks another address when a caller finds a
// collision (24 bits collide a few times among 10 000 machines); use 0
// first. testbed "" derives from the name alone.
func MACIn(testbed, name string, nic, salt int) net.HardwareAddr {
	key := name + "/nic" + strconv.Itoa(nic)
	if salt != 0 {
		key += "/" + strconv.Itoa(salt)
	}
	if testbed != "" {
		key = testbed + "/" + key
	}
	h := sha256.Sum256([]byte(key))
	return net.HardwareAddr{0x52, 0x54, 0x00, h[0], h[1], h[2]}
}

// UUIDFor is the SMBIOS system UUID of a machine: UUIDIn with no testbed.
func UUIDFor(name string) [16]byte { return UUIDIn("", name) }

// UUIDIn is the SMBIOS system UUID of a machine in the testbed with ID
// testbed: a name-based UUID (version 5 layout over SHA-256) so it is
// stable across restarts and differs between testbeds. testbed ""
// derives from the name alone.
func UUIDIn(testbed, name string) [16]byte {
	key := "metalbed machine " + name
	if testbed != "" {
		key = "metalbed testbed " + testbed + " machine " + name
	}
	h := sha256.Sum256([]byte(key))
	var u [16]byte
	copy(u[:], h[:16])
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return u
}

// FormatUUID renders a UUID as 8-4-4-4-12 lowercase hex.
func FormatUUID(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func parseUUID(s string) ([16]byte, error) {
	var u [16]byte
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 || len(s) != 36 {
		return u, fmt.Errorf("%q is not a UUID", s)
	}
	copy(u[:], b)
	return u, nil
}

// ParseMAC parses a NIC's MAC address: 6 bytes, unicast.
func ParseMAC(s string) (net.HardwareAddr, error) {
	m, err := net.ParseMAC(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a MAC address: %w", s, err)
	}
	if len(m) != 6 {
		return nil, fmt.Errorf("%q is not a 6-byte Ethernet MAC address", s)
	}
	if m[0]&1 != 0 {
		return nil, fmt.Errorf("%q is a multicast address, not a NIC's", s)
	}
	return m, nil
}

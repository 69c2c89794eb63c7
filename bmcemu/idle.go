package bmcemu

import (
	"errors"
	"net"
	"syscall"
)

// awaitDatagram blocks until a datagram waits on conn, without reading
// it, or until conn's read deadline passes (Serve's shutdown). An idle BMC
// of a large fleet costs this one parked goroutine and nothing else:
// go-ipmi's packet loop (its read buffer, its session eviction goroutine,
// the pacer) starts with the first datagram. A conn that is no socket
// (no syscall.Conn) starts the loop at once.
func awaitDatagram(conn net.PacketConn) error {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil // the packet loop will meet the same error
	}
	var peek [1]byte
	return rc.Read(func(fd uintptr) bool {
		// MSG_PEEK leaves the datagram for the packet loop; any outcome
		// but "nothing yet" (an error included) is the loop's to handle.
		_, _, err := syscall.Recvfrom(int(fd), peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return !errors.Is(err, syscall.EAGAIN)
	})
}

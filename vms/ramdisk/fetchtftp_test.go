package ramdisk

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	tftpserver "github.com/pin/tftp/v3"
)

// TestFetchTFTPErrorHasNoNUL: a TFTP server's ERROR packet ends its
// message with a NUL; the error FetchTFTP returns (which the ramdisk
// prints on its console) carries the message without it.
func TestFetchTFTPErrorHasNoNUL(t *testing.T) {
	srv := tftpserver.NewServer(func(name string, _ io.ReaderFrom) error {
		return errors.New(name + ": file not found")
	}, nil)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(conn)
	t.Cleanup(srv.Shutdown)

	addr := conn.LocalAddr().(*net.UDPAddr)
	_, err = FetchTFTP(t.Context(), addr.IP, addr.Port, "token-x")
	if err == nil {
		t.Fatal("missing file fetched")
	}
	msg := err.Error()
	if strings.ContainsRune(msg, 0) || !strings.HasSuffix(msg, "token-x: file not found") {
		t.Errorf("error %q: want the server's message, without NUL", msg)
	}
}

package iscsitarget_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"

	"github.com/metalbed/metalbed/iscsitarget"
)

// Export a disk image as LUN 1 of a target on a loopback port, with CHAP.
func ExampleTarget() {
	path := filepath.Join(os.TempDir(), "metalbed-example-disk.img")
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(path)
	defer f.Close()
	if err := f.Truncate(64 << 20); err != nil {
		log.Fatal(err)
	}
	t, err := iscsitarget.New(iscsitarget.Config{
		IQN:  "iqn.2008-10.org.openstack:node-1",
		Disk: f, // size from Stat; any io.ReaderAt+io.WriterAt works with Config.Size
		CHAP: iscsitarget.CHAP{Username: "conductor", Secret: "s3cret-123456"},
	})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- t.Serve(ctx, ln) }()
	fmt.Printf("%s exports %d bytes\n", t.IQN(), t.Size())
	// ... initiators log in to iscsi://conductor%s3cret-123456@<ln.Addr()>/<IQN>/1 ...
	cancel() // or t.Close(), which also drops every session
	fmt.Println("Serve:", <-done)
	// Output:
	// iqn.2008-10.org.openstack:node-1 exports 67108864 bytes
	// Serve: <nil>
}

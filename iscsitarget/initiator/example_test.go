package initiator_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/metalbed/metalbed/iscsitarget/initiator"
)

// Write an image to the disk a deploy ramdisk exports as LUN 1, as the conductor of an
// iSCSI deploy does.
func ExampleDial() {
	ctx := context.Background()
	s, err := initiator.Dial(ctx, initiator.Config{
		Addr:      "127.0.0.1:3260",
		TargetIQN: "iqn.2008-10.org.openstack:0b1a6c02-2a45-4e8e-9f59-8a3b0c5cbd3e",
		CHAP:      initiator.CHAP{Username: "deployer", Secret: "secret-12345"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close() // logs out
	img, err := os.Open("image.raw")
	if err != nil {
		log.Fatal(err)
	}
	defer img.Close()
	// The session is an io.WriterAt of Size() bytes.
	n, err := io.Copy(io.NewOffsetWriter(s, 0), img)
	if err != nil {
		log.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wrote %d of %d bytes\n", n, s.Size())
}

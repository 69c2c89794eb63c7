package bmcemu_test

import (
	"context"
	"log"
	"net"

	"github.com/metalbed/metalbed/bmcemu"
)

// Example serves one BMC for a Machine on its own UDP port, as
// `metalbed up` does for node-i on port 6230+i. Drive it with
// `ipmitool -I lanplus -C 17 -H 127.0.0.1 -p 6230 -U admin -P password power status`.
func Example() {
	var machine bmcemu.Machine // a vms machine adapted to bmcemu.Machine
	srv, err := bmcemu.New(bmcemu.Config{
		Machine:  machine,
		Name:     "node-0",
		Username: "admin",
		Password: "password",
	})
	if err != nil {
		log.Fatal(err)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:6230")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := srv.Serve(ctx, conn); err != nil {
		log.Fatal(err)
	}
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/metalbed/metalbed/iscsitarget"
)

// runTargetServe serves one disk file as LUN 1 of an iSCSI target until
// ctx ends (SIGINT/SIGTERM).
func runTargetServe(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("target serve", s)
	disk := fs.String("disk", "", "file or block device to export as LUN 1 (required)")
	iqn := fs.String("iqn", "", "target name, e.g. iqn.2008-10.org.openstack:node-1 (required)")
	addr := fs.String("addr", "127.0.0.1:3260", "portal address HOST:PORT")
	chapUser := fs.String("chap-user", "", "CHAP username an initiator must log in with")
	chapSecret := fs.String("chap-secret", "", "CHAP secret (12 to 16 characters recommended)")
	mutualUser := fs.String("chap-mutual-user", "", "username the target answers mutual CHAP with")
	mutualSecret := fs.String("chap-mutual-secret", "", "secret the target answers mutual CHAP with")
	blockSize := fs.Uint("block-size", 512, "logical block size: 512 or 4096")
	verbose := fs.Bool("v", false, "log connections and logins to stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *disk == "" || *iqn == "" {
		return usageError("target serve needs --disk and --iqn")
	}
	if (*chapUser == "") != (*chapSecret == "") {
		return usageError("--chap-user and --chap-secret go together")
	}
	f, err := os.OpenFile(*disk, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open disk: %w", err)
	}
	defer f.Close()
	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(slog.NewTextHandler(s.Err, nil))
	}
	t, err := iscsitarget.New(iscsitarget.Config{
		Addr:      *addr,
		IQN:       *iqn,
		Disk:      f,
		BlockSize: uint32(*blockSize),
		CHAP: iscsitarget.CHAP{
			Username: *chapUser, Secret: *chapSecret,
			MutualUsername: *mutualUser, MutualSecret: *mutualSecret,
		},
		Logger: logger,
	})
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Fprintf(s.Out, "iscsi target %s serving %s (%d bytes) as LUN 1 on %s\n", *iqn, *disk, t.Size(), ln.Addr())
	err = t.Serve(ctx, ln)
	t.Close()
	if errors.Is(err, iscsitarget.ErrClosed) {
		return nil
	}
	return err
}

package scenarios

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cucumber/godog"
)

// registerVirtualMediaSteps: nodes enrolled by `metalbed up` with driver
// redfish and boot interface redfish-virtual-media or redfish-https
// (deploy interface direct, boot_option local), and the faults that break
// virtual media.
func (w *world) registerVirtualMediaSteps(sc *godog.ScenarioContext) {
	sc.Given(`^a virtual media testbed with (\d+) (bios|uefi) machines?(?: and a deploy callback timeout of (\d+) seconds)?$`,
		func(ctx context.Context, n int, mode, timeout string) error {
			flags := []string{"--enroll-driver", "redfish", "--boot-interface", "redfish-virtual-media"}
			if timeout != "" {
				flags = append(flags, "--deploy-callback-timeout", timeout+"s")
			}
			return w.startTestbed(ctx, envSpec{Machines: n, BootMode: mode, Flags: flags})
		})
	sc.Given(`^a UEFI HTTP boot testbed with (\d+) uefi machines?$`, func(ctx context.Context, n int) error {
		flags := []string{"--enroll-driver", "redfish", "--boot-interface", "redfish-https"}
		return w.startTestbed(ctx, envSpec{Machines: n, BootMode: "uefi", Flags: flags})
	})
	sc.Step(`^the boot ISO of node "([^"]*)" is answered 404 by the HTTP boot server$`, func(ctx context.Context, name string) error {
		uuid, err := w.nodeUUID(name)
		if err != nil {
			return err
		}
		return w.injectAgentFault(ctx, faultRule{Node: name, Layer: "http", Op: "redfish/boot-" + uuid + ".iso", Action: "status", Arg: "404"})
	})
	sc.Step(`^the BMC of machine "([^"]*)" answers InsertMedia with 503(?: (\d+) times)?$`, func(ctx context.Context, name, times string) error {
		return w.injectAgentFault(ctx, faultRule{Node: name, Layer: "redfish", Op: "VirtualMedia.InsertMedia", Action: "status", Arg: "503", Count: atoiOr(times, 0)})
	})
	sc.Step(`^the BMC of machine "([^"]*)" drops the next boot override$`, func(ctx context.Context, name string) error {
		return w.injectAgentFault(ctx, faultRule{Node: name, Layer: "redfish", Op: "boot-override", Action: "drop-boot-override", Count: 1})
	})
	sc.Step(`^the BMC of machine "([^"]*)" ejects the medium after (\d+) reads? of the next boot from it$`, func(ctx context.Context, name string, reads int) error {
		return w.injectAgentFault(ctx, faultRule{Node: name, Layer: "redfish", Op: "vmedia-boot", Action: "eject-during-boot", Arg: fmt.Sprint(reads), Count: 1})
	})
	sc.Step(`^the boot ISO of node "([^"]*)" is no longer published$`, func(name string) error {
		uuid, err := w.nodeUUID(name)
		if err != nil {
			return err
		}
		p := filepath.Join(w.env.dir, "machines", "provisioner", "http", "redfish", "boot-"+uuid+".iso")
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s is still there (%v)", p, err)
		}
		if _, err := os.Stat(filepath.Dir(p)); err != nil {
			return fmt.Errorf("no ISO was ever published: %w", err)
		}
		return nil
	})
}

// nodeUUID is the UUID of the node enrolled for machine name.
func (w *world) nodeUUID(name string) (string, error) {
	if err := w.needEnv(); err != nil {
		return "", err
	}
	uuid, ok := w.nodes[name]
	if !ok {
		return "", fmt.Errorf("no node %q enrolled", name)
	}
	return uuid, nil
}

package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/metalbed/metalbed/provisioner/api"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/service"
)

// provisionerStateDir is where the provisioner keeps its database unless
// told: the provisioner/ folder of metalbed's state directory.
func provisionerStateDir() string {
	dir, err := defaultStateDir()
	if err != nil {
		return "metalbed-state"
	}
	return filepath.Join(dir, "provisioner")
}

// provisionerRegistry builds the enabled hardware types from a comma list.
func provisionerRegistry(list string, ipmi drivers.IPMIConfig) (*drivers.Registry, error) {
	var types []*drivers.HardwareType
	for _, name := range strings.Split(list, ",") {
		switch strings.TrimSpace(name) {
		case "":
		case "ipmi":
			h, err := drivers.NewIPMI(ipmi)
			if err != nil {
				return nil, err
			}
			types = append(types, h)
		case "fake-hardware":
			types = append(types, drivers.NewFakeHardware())
		default:
			return nil, usageError("unknown hardware type %q (want ipmi, fake-hardware)", name)
		}
	}
	if len(types) == 0 {
		return nil, usageError("--drivers enables no hardware type")
	}
	return drivers.NewRegistry(types...)
}

// runProvisionerServe runs the provisioner (Ironic-compatible API and
// conductor) on its own.
func runProvisionerServe(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("provisioner serve", s)
	addr := fs.String("addr", api.DefaultAddr, "API listen address")
	stateDir := fs.String("state-dir", provisionerStateDir(), "directory holding the provisioner database")
	driverList := fs.String("drivers", "ipmi,fake-hardware", "enabled hardware types, comma-separated")
	ipmiClient := fs.String("ipmi-client", drivers.ClientIPMITool, "IPMI client behind the ipmi hardware type: ipmitool or native")
	htpasswd := fs.String("htpasswd", "", "htpasswd file (bcrypt) turning on HTTP basic auth; \"\" = no auth")
	hostname := fs.String("hostname", "", "conductor name (default: the host name)")
	powerSync := fs.Duration("power-sync-interval", 60*time.Second, "how often power states are read from the BMCs (negative disables)")
	callbackTimeout := fs.Duration("deploy-callback-timeout", 1800*time.Second, "how long a node may wait for its deploy ramdisk")
	automatedClean := fs.Bool("automated-clean", false, "clean nodes on provide and undeploy (needs the deploy ramdisk)")
	verbose := fs.Bool("verbose", false, "log debug messages")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(s.Err, &slog.HandlerOptions{Level: level}))
	reg, err := provisionerRegistry(*driverList, drivers.IPMIConfig{Client: *ipmiClient, Logger: log})
	if err != nil {
		return err
	}
	svc, err := service.New(service.Config{
		APIAddr: *addr, StateDir: *stateDir, Drivers: reg, Hostname: *hostname, HTPasswdFile: *htpasswd,
		PowerSyncInterval: *powerSync, DeployCallbackTimeout: *callbackTimeout, AutomatedClean: *automatedClean,
		Logger: log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", svc.Addr())
	if err != nil {
		return fmt.Errorf("provisioner API: %w", err)
	}
	fmt.Fprintf(s.Out, "provisioner API on http://%s (state in %s, drivers %s)\n", ln.Addr(), *stateDir, strings.Join(reg.Names(), ", "))
	return svc.Serve(ctx, ln)
}

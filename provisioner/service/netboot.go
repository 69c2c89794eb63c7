package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/boot"
	directdeploy "github.com/metalbed/metalbed/provisioner/deploy/direct"
	"github.com/metalbed/metalbed/provisioner/deploy/iscsi"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/imagecache"
	"github.com/metalbed/metalbed/provisioner/store"
)

// netboot builds the pxe/ipxe boot interfaces and the iscsi deploy
// interface into s.cfg.IPMI. The interfaces reach the node's management
// and power interfaces through the registry, built right after this.
func (s *Service) netboot() error {
	nb := *s.cfg.Netboot // the caller keeps its copy
	if nb.ImageCacheDir == "" {
		nb.ImageCacheDir = filepath.Join(s.cfg.StateDir, "master_images")
	}
	if nb.ImagesDir == "" {
		nb.ImagesDir = filepath.Join(s.cfg.StateDir, "images")
	}
	if nb.DefaultBootMode == "" {
		nb.DefaultBootMode = s.cfg.IPMI.DefaultBootMode
	}
	var client *http.Client // nil: the packages' defaults
	if nb.DialContext != nil {
		client = &http.Client{Transport: &http.Transport{
			DialContext:           nb.DialContext,
			ResponseHeaderTimeout: 30 * time.Second,
		}}
	}
	cache, err := imagecache.New(imagecache.Config{Dir: nb.ImageCacheDir, Client: client, Logger: s.cfg.Logger})
	if err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	bc := boot.Config{
		TFTPRoot: nb.TFTPRoot, TFTPServer: nb.TFTPServer, HTTPRoot: nb.HTTPRoot, HTTPURL: nb.HTTPURL,
		APIURL: nb.APIURL, Hosts: nb.Hosts, Images: cache, Ports: s.ports,
		Management: nodeManagement{s}, Loaders: nb.Loaders, AppendParams: nb.AppendParams,
		DefaultBootMode: nb.DefaultBootMode, DefaultBootOption: nb.DefaultBootOption, Logger: s.cfg.Logger,
	}
	pxe, err := boot.NewPXE(bc)
	if err != nil {
		return err
	}
	bootIfaces := map[string]drivers.BootInterface{"pxe": pxe}
	if nb.HTTPRoot != "" && nb.HTTPURL != "" {
		ipxe, err := boot.NewIPXE(bc)
		if err != nil {
			return err
		}
		bootIfaces["ipxe"] = ipxe
	}
	dep, err := iscsi.New(iscsi.Config{
		Drivers: func() *drivers.Registry { return s.cfg.Drivers }, Images: cache, ImagesDir: nb.ImagesDir,
		ISCSIPort: nb.ISCSIPort, NotifyPort: nb.NotifyPort, NotifyDelay: nb.NotifyDelay, DialContext: nb.DialContext,
		DefaultBootMode: nb.DefaultBootMode, DefaultBootOption: nb.DefaultBootOption,
		Milestone: s.cfg.Milestone, Logger: s.cfg.Logger,
	})
	if err != nil {
		return err
	}
	direct, err := directdeploy.New(directdeploy.Config{
		Drivers: func() *drivers.Registry { return s.cfg.Drivers }, Images: cache, APIURL: nb.APIURL,
		HTTPRoot: nb.HTTPRoot, HTTPURL: nb.HTTPURL, PowerOffInterval: nb.AgentPowerOffInterval,
		HTTPClient:      &http.Client{Transport: directdeploy.AgentTransport(nb.DialContext)},
		DefaultBootMode: nb.DefaultBootMode, DefaultBootOption: nb.DefaultBootOption,
		Milestone: s.cfg.Milestone, Logger: s.cfg.Logger,
	})
	if err != nil {
		return err
	}
	boots := map[string]drivers.BootInterface{}
	for k, v := range s.cfg.IPMI.Boot {
		boots[k] = v
	}
	for k, v := range bootIfaces {
		boots[k] = v
	}
	deploys := map[string]drivers.DeployInterface{}
	for k, v := range s.cfg.IPMI.Deploy {
		deploys[k] = v
	}
	deploys[iscsi.Name] = dep
	deploys[directdeploy.Name] = direct
	s.cfg.IPMI.Boot, s.cfg.IPMI.Deploy = boots, deploys
	return nil
}

// ports lists a node's ports from the store Serve opened.
func (s *Service) ports(ctx context.Context, nodeUUID string) ([]provisioner.Port, error) {
	st := s.st.Load()
	if st == nil {
		return nil, errors.New("provisioner store is not open")
	}
	ps, err := st.Ports(ctx, store.PortFilter{NodeUUID: nodeUUID})
	if err != nil {
		return nil, err
	}
	out := make([]provisioner.Port, len(ps))
	for i, p := range ps {
		out[i] = *p
	}
	return out, nil
}

// nodeManagement is the management interface of whatever hardware type a
// node has, looked up at call time: boot interfaces set boot devices
// through it, and they are part of the registry that holds it.
type nodeManagement struct{ s *Service }

func (m nodeManagement) of(node *provisioner.Node) (drivers.ManagementInterface, error) {
	h, err := m.s.cfg.Drivers.Get(node.Driver)
	if err != nil {
		return nil, err
	}
	return h.ManagementFor(node)
}

func (m nodeManagement) Validate(ctx context.Context, node *provisioner.Node) error {
	mi, err := m.of(node)
	if err != nil {
		return err
	}
	return mi.Validate(ctx, node)
}

func (m nodeManagement) SupportedBootDevices(ctx context.Context, node *provisioner.Node) ([]string, error) {
	mi, err := m.of(node)
	if err != nil {
		return nil, err
	}
	return mi.SupportedBootDevices(ctx, node)
}

func (m nodeManagement) GetBootDevice(ctx context.Context, node *provisioner.Node) (drivers.BootDevice, error) {
	mi, err := m.of(node)
	if err != nil {
		return drivers.BootDevice{}, err
	}
	return mi.GetBootDevice(ctx, node)
}

func (m nodeManagement) SetBootDevice(ctx context.Context, node *provisioner.Node, dev drivers.BootDevice) error {
	mi, err := m.of(node)
	if err != nil {
		return err
	}
	return mi.SetBootDevice(ctx, node, dev)
}

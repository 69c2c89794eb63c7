package service

import (
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/metalbed/metalbed/provisioner/boot"
	"github.com/metalbed/metalbed/provisioner/deploy"
	directdeploy "github.com/metalbed/metalbed/provisioner/deploy/direct"
	"github.com/metalbed/metalbed/provisioner/deploy/iscsi"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/imagecache"
)

// netboot builds the pxe/ipxe boot interfaces and the iscsi and direct
// deploy interfaces into s.cfg.IPMI, and with an HTTP root the
// redfish-virtual-media and redfish-https boot interfaces into s.cfg.Redfish (unless the
// caller chose its boot interfaces). They depend on nothing the registry
// holds: the conductor hands them each node's ports and power, management
// and boot interfaces in a drivers.Task.
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
		APIURL: nb.APIURL, Hosts: nb.Hosts, Images: cache,
		Loaders: nb.Loaders, ISOLoaders: nb.ISOLoaders, AppendParams: nb.AppendParams,
		DefaultBootMode: nb.DefaultBootMode, DefaultBootOption: nb.DefaultBootOption, Logger: s.cfg.Logger,
	}
	pxe, err := boot.NewPXE(bc)
	if err != nil {
		return err
	}
	bootIfaces := map[string]drivers.BootInterface{"pxe": pxe}
	var vmedia *boot.VirtualMedia
	var https *boot.HTTPS
	if nb.HTTPRoot != "" && nb.HTTPURL != "" {
		ipxe, err := boot.NewIPXE(bc)
		if err != nil {
			return err
		}
		bootIfaces["ipxe"] = ipxe
		if vmedia, err = boot.NewVirtualMedia(bc); err != nil {
			return err
		}
		if https, err = boot.NewHTTPS(bc); err != nil {
			return err
		}
	}
	core := deploy.Config{
		Images: cache, DialContext: nb.DialContext,
		DefaultBootMode: nb.DefaultBootMode, DefaultBootOption: nb.DefaultBootOption,
		Recorder: s.cfg.Recorder, Faults: s.conductorFaults(), Logger: s.cfg.Logger, Now: s.cfg.Now,
	}
	dep, err := iscsi.New(iscsi.Config{
		Config: core, ImagesDir: nb.ImagesDir,
		ISCSIPort: nb.ISCSIPort, NotifyPort: nb.NotifyPort, NotifyDelay: nb.NotifyDelay,
	})
	if err != nil {
		return err
	}
	direct, err := directdeploy.New(directdeploy.Config{
		Config: core, APIURL: nb.APIURL,
		HTTPRoot: nb.HTTPRoot, HTTPURL: nb.HTTPURL, PowerOffInterval: nb.AgentPowerOffInterval,
		HTTPClient: &http.Client{Transport: directdeploy.AgentTransport(nb.DialContext)},
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
	agentInspect, err := drivers.NewAgentInspect(nb.APIURL)
	if err != nil {
		return err
	}
	inspects := map[string]drivers.InspectInterface{drivers.AgentInspectName: agentInspect}
	for k, v := range s.cfg.IPMI.Inspect {
		inspects[k] = v
	}
	s.cfg.IPMI.Inspect = inspects
	if s.cfg.Redfish.Boot == nil && vmedia != nil {
		// The redfish hardware type boots as ipmi does, and from
		// virtual media and by UEFI HTTP too (Ironic's
		// supported_boot_interfaces).
		rf := map[string]drivers.BootInterface{boot.VirtualMediaName: vmedia, boot.HTTPSName: https}
		for k, v := range boots {
			rf[k] = v
		}
		s.cfg.Redfish.Boot = rf
	}
	return nil
}

package drivers

import (
	"context"
	"fmt"
	"slices"

	"github.com/metalbed/metalbed/provisioner"
)

// Virtual media devices as the VirtualMediaManager names them.
const (
	MediaCD  = "cd"  // a CD or DVD drive (Redfish MediaTypes CD, DVD)
	MediaUSB = "usb" // a USB stick slot (Redfish MediaTypes USBStick)
)

// VirtualMediaManager is a management interface that can insert an image
// into a virtual media device of the node's BMC and eject it again
// (Ironic's redfish boot: _insert_vmedia, _eject_vmedia). device is
// MediaCD or MediaUSB.
type VirtualMediaManager interface {
	// InsertMedia inserts the image at url (write protected) into the
	// first free device of that kind; it does nothing when one holds url
	// already. No free device of that kind is a ParameterError.
	InsertMedia(ctx context.Context, node *provisioner.Node, device, url string) error
	// EjectMedia ejects every inserted device of that kind; an empty
	// device is left alone.
	EjectMedia(ctx context.Context, node *provisioner.Node, device string) error
}

var _ VirtualMediaManager = (*RedfishManagement)(nil)

// HTTPBootManager is a management interface that can boot the node by
// UEFI HTTP: its SetBootDevice takes BootDeviceUEFIHTTP with the URI.
type HTTPBootManager interface {
	// SupportsUEFIHTTP reports whether the node's BMC offers UEFI HTTP
	// boot.
	SupportsUEFIHTTP(ctx context.Context, node *provisioner.Node) (bool, error)
}

var _ HTTPBootManager = (*RedfishManagement)(nil)

// mediaTypes are the Redfish MediaTypes a device name matches, as sushy's
// VIRTUAL_MEDIA_CD (and, as Ironic's eject, DVD) and VIRTUAL_MEDIA_USBSTICK.
func mediaTypes(device string) ([]string, error) {
	switch device {
	case MediaCD:
		return []string{"CD", "DVD"}, nil
	case MediaUSB:
		return []string{"USBStick"}, nil
	}
	return nil, invalidf("Invalid virtual media device %q: want %q or %q", device, MediaCD, MediaUSB)
}

// rfMedia is the part of a VirtualMedia resource the interface reads.
type rfMedia struct {
	ODataID    string   `json:"@odata.id"`
	MediaTypes []string `json:"MediaTypes"`
	Image      *string  `json:"Image"`
	Inserted   bool     `json:"Inserted"`
	Actions    struct {
		Insert struct {
			Target string `json:"target"`
		} `json:"#VirtualMedia.InsertMedia"`
		Eject struct {
			Target string `json:"target"`
		} `json:"#VirtualMedia.EjectMedia"`
	} `json:"Actions"`
}

// matches reports whether m is a device of one of types.
func (m *rfMedia) matches(types []string) bool {
	for _, t := range m.MediaTypes {
		if slices.Contains(types, t) {
			return true
		}
	}
	return false
}

// action is the target of an InsertMedia or EjectMedia action, or the
// path Redfish defines for it when the resource lists none.
func (m *rfMedia) action(target, name string) string {
	if target != "" {
		return target
	}
	return m.ODataID + "/Actions/VirtualMedia." + name
}

// virtualMedia lists the virtual media devices of the Managers the node's
// system links (Links.ManagedBy), as sushy reaches them.
func (c *redfishCore) virtualMedia(ctx context.Context, node *provisioner.Node) (*rfClient, []*rfMedia, error) {
	cl, _, sys, err := c.system(ctx, node)
	if err != nil {
		return nil, nil, err
	}
	var out []*rfMedia
	for _, mgr := range sys.Links.ManagedBy {
		var m struct {
			VirtualMedia struct {
				ID string `json:"@odata.id"`
			} `json:"VirtualMedia"`
		}
		if _, err := cl.do(ctx, "GET", mgr.ID, nil, &m); err != nil {
			return nil, nil, redfishFailure(node, "get manager "+mgr.ID, err)
		}
		if m.VirtualMedia.ID == "" {
			continue
		}
		var coll struct {
			Members []struct {
				ID string `json:"@odata.id"`
			} `json:"Members"`
		}
		if _, err := cl.do(ctx, "GET", m.VirtualMedia.ID, nil, &coll); err != nil {
			return nil, nil, redfishFailure(node, "get virtual media of "+mgr.ID, err)
		}
		for _, member := range coll.Members {
			var v rfMedia
			if _, err := cl.do(ctx, "GET", member.ID, nil, &v); err != nil {
				return nil, nil, redfishFailure(node, "get virtual media "+member.ID, err)
			}
			if v.ODataID == "" {
				v.ODataID = member.ID
			}
			out = append(out, &v)
		}
	}
	return cl, out, nil
}

// InsertMedia POSTs VirtualMedia.InsertMedia with Image, Inserted and
// WriteProtected to the first empty device of the kind, as Ironic's
// _insert_vmedia: a device holding url already makes it a no-op, one
// holding another image is skipped.
func (m *RedfishManagement) InsertMedia(ctx context.Context, node *provisioner.Node, device, url string) error {
	types, err := mediaTypes(device)
	if err != nil {
		return err
	}
	cl, media, err := m.core.virtualMedia(ctx, node)
	if err != nil {
		return err
	}
	for _, v := range media {
		if !v.matches(types) {
			continue
		}
		if v.Inserted {
			if v.Image != nil && *v.Image == url {
				return nil
			}
			continue
		}
		body := map[string]any{"Image": url, "Inserted": true, "WriteProtected": true}
		if _, err := cl.do(ctx, "POST", v.action(v.Actions.Insert.Target, "InsertMedia"), body, nil); err != nil {
			return redfishFailure(node, fmt.Sprintf("insert %s into virtual media %s", url, v.ODataID), err)
		}
		m.core.log.Info("virtual media inserted", "node", node.UUID, "event", "insert", "device", v.ODataID, "image", url)
		return nil
	}
	return invalidf("No suitable virtual media device found")
}

// EjectMedia POSTs VirtualMedia.EjectMedia (an empty body, as sushy) to
// every inserted device of the kind.
func (m *RedfishManagement) EjectMedia(ctx context.Context, node *provisioner.Node, device string) error {
	types, err := mediaTypes(device)
	if err != nil {
		return err
	}
	cl, media, err := m.core.virtualMedia(ctx, node)
	if err != nil {
		return err
	}
	for _, v := range media {
		if !v.matches(types) || !v.Inserted {
			continue
		}
		if _, err := cl.do(ctx, "POST", v.action(v.Actions.Eject.Target, "EjectMedia"), map[string]any{}, nil); err != nil {
			return redfishFailure(node, "eject virtual media "+v.ODataID, err)
		}
		m.core.log.Info("virtual media ejected", "node", node.UUID, "event", "eject", "device", v.ODataID)
	}
	return nil
}

package agent

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/metalbed/metalbed/internal/events"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/vms/ramdisk"
)

// imageInfo is prepare_image's image_info (Ironic's agent
// build_instance_info_for_deploy); unknown keys are ignored as IPA does.
type imageInfo struct {
	ID                string   `json:"id"`
	URLs              []string `json:"urls"`
	Checksum          string   `json:"checksum"`
	OSHashAlgo        string   `json:"os_hash_algo"`
	OSHashValue       string   `json:"os_hash_value"`
	DiskFormat        string   `json:"disk_format"`
	ContainerFormat   string   `json:"container_format"`
	StreamRawImages   bool     `json:"stream_raw_images"`
	ImageType         string   `json:"image_type"`
	NodeUUID          string   `json:"node_uuid"`
	RootMB            flexInt  `json:"root_mb"`
	SwapMB            flexInt  `json:"swap_mb"`
	EphemeralMB       flexInt  `json:"ephemeral_mb"`
	EphemeralFormat   string   `json:"ephemeral_format"`
	PreserveEphemeral any      `json:"preserve_ephemeral"`
	BootOption        string   `json:"boot_option"`
	BootMode          string   `json:"boot_mode"`
	DeployBootMode    string   `json:"deploy_boot_mode"`
	DiskLabel         string   `json:"disk_label"`
	Configdrive       *string  `json:"configdrive"`
}

// flexInt is a number Ironic may send as an int, a float or a string.
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		return nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || v > 1<<40 {
		return fmt.Errorf("want a size in MiB, got %s", b)
	}
	*f = flexInt(v)
	return nil
}

// deployState is what the last image write left: IPA's cached_image_id and
// partition_uuids.
type deployState struct {
	imageID   string
	wholeDisk bool
	uuids     map[string]any
}

// decodeImageInfo reads and validates image_info as IPA's
// _validate_image_info, with its messages.
func decodeImageInfo(p params) (*imageInfo, error) {
	raw, ok := p["image_info"]
	if !ok || string(raw) == "null" {
		return nil, errInvalidParams("Image is missing 'id' field.")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, errInvalidParams("image_info must be an object")
	}
	for _, f := range []string{"id", "urls"} {
		if _, ok := m[f]; !ok {
			return nil, errInvalidParams(fmt.Sprintf("Image is missing '%s' field.", f))
		}
	}
	var urls []any
	if json.Unmarshal(m["urls"], &urls) != nil || len(urls) == 0 {
		return nil, errInvalidParams("Image 'urls' must be a list with at least one element.")
	}
	for _, u := range urls {
		if _, ok := u.(string); !ok {
			return nil, errInvalidParams("Image 'urls' must be a list with at least one element.")
		}
	}
	str := func(k string) (string, bool, error) {
		r, ok := m[k]
		if !ok || string(r) == "null" {
			return "", false, nil
		}
		var s string
		if json.Unmarshal(r, &s) != nil || s == "" {
			return "", true, errInvalidParams(fmt.Sprintf("Image '%s' must be a non-empty string.", k))
		}
		return s, true, nil
	}
	_, md5ok, err := str("checksum")
	if err != nil {
		return nil, err
	}
	algo, algoSet, err := str("os_hash_algo")
	if err != nil {
		return nil, err
	}
	_, valSet, err := str("os_hash_value")
	if err != nil {
		return nil, err
	}
	if algoSet || valSet {
		if !algoSet || algo == "" {
			return nil, errInvalidParams("Image 'os_hash_algo' must be a non-empty string.")
		}
		if !valSet {
			return nil, errInvalidParams("Image 'os_hash_value' must be a non-empty string.")
		}
	}
	if !md5ok && !(algoSet && valSet) {
		return nil, errInvalidParams("Image checksum is not available, either the 'checksum' field or the 'os_hash_algo' and 'os_hash_value' fields pair must be set for image verification.")
	}
	var info imageInfo
	if err := json.Unmarshal(raw, &info); err != nil {
		return nil, errInvalidParams("image_info: " + err.Error())
	}
	if info.ID == "" {
		return nil, errInvalidParams("Image is missing 'id' field.")
	}
	return &info, nil
}

// prepareImage is standby.prepare_image.
func (a *Agent) prepareImage(ctx context.Context, p params) (any, error) {
	info, err := decodeImageInfo(p)
	if err != nil {
		return nil, err
	}
	var configdrive *string
	if err := p.decode("configdrive", &configdrive); err != nil {
		return nil, err
	}
	if configdrive == nil {
		configdrive = info.Configdrive
	}
	d, err := a.installDevice(ctx)
	if err != nil {
		return nil, err
	}
	device := "/dev/" + d.Name
	a.say("preparing image %s on %s", info.ID, device)
	a.milestone(events.AgentImage, info.ID+" -> "+device)

	a.mu.Lock()
	cached := a.deployed
	a.mu.Unlock()
	if cached == nil || cached.imageID != info.ID {
		var st *deployState
		if info.ImageType == "partition" {
			st, err = a.writePartitionImage(ctx, info, d, configdrive)
		} else {
			st, err = a.writeWholeDiskImage(ctx, info, d, configdrive)
		}
		if err != nil {
			return nil, err
		}
		a.mu.Lock()
		a.deployed = st
		cached = st
		a.mu.Unlock()
	}
	root, _ := cached.uuids["root uuid"].(string)
	esp, _ := cached.uuids["efi system partition uuid"].(string)
	msg := fmt.Sprintf("image (%s) written to device %s ", info.ID, device)
	if bootModeOf(info, a.cachedNode()) == disk.BootModeUEFI && esp != "" {
		msg += fmt.Sprintf("root_uuid=%s efi_system_partition_uuid=%s", root, esp)
	} else {
		msg += "root_uuid=" + root
	}
	a.say("%s", msg)
	a.milestone(events.AgentImageWritten, msg)
	return msg, nil
}

// withRetries runs one download attempt and retries download errors as
// IPA's image_download_connection_retries.
func (a *Agent) withRetries(ctx context.Context, attempt func() error) error {
	for i := 0; ; i++ {
		err := attempt()
		var re *restError
		if err == nil || !errors.As(err, &re) || re.Type != "ImageDownloadError" || i >= a.cfg.DownloadRetries || ctx.Err() != nil {
			return err
		}
		a.say("image download failed, %d of %d: %v", i, a.cfg.DownloadRetries, err)
		t := time.NewTimer(a.cfg.DownloadRetryInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// writeWholeDiskImage streams a raw whole-disk image onto the disk,
// hashing while writing, and checks the partition table it brought.
func (a *Agent) writeWholeDiskImage(ctx context.Context, info *imageInfo, d ramdisk.Disk, configdrive *string) (*deployState, error) {
	device := "/dev/" + d.Name
	if f := strings.ToLower(info.DiskFormat); f != "" && f != "raw" {
		return nil, errImageWrite(device, fmt.Errorf("disk_format %q: this agent writes raw images only (convert with qemu-img, or let Ironic convert: [DEFAULT]force_raw_images)", info.DiskFormat))
	}
	if configdrive != nil && *configdrive != "" {
		return nil, errExecution("a config drive with a whole-disk image is not supported by the metalbed agent; use a partition image or no config drive")
	}
	h, want, err := hashFor(info)
	if err != nil {
		return nil, err
	}
	if want, err = a.expectedChecksum(ctx, info, want); err != nil {
		return nil, err
	}
	start := time.Now()
	var written int64
	err = a.withRetries(ctx, func() error {
		h.Reset()
		body, err := a.openImage(ctx, info)
		if err != nil {
			return err
		}
		defer body.Close()
		if err := disk.DestroyDiskMetadata(d.Dev, d.SizeBytes); err != nil {
			return errImageWrite(device, err)
		}
		hr := &hashingReader{r: body, h: h}
		written, err = streamToDisk(ctx, hr, d.Dev, d.SizeBytes)
		if err != nil {
			if errors.Is(err, errStalled) || isReadErr(err) {
				return errImageDownload(info.ID, fmt.Sprintf("Unable to write image to device %s. Error: %v", device, err))
			}
			return errImageWrite(device, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	a.say("image streamed onto device %s in %.3f seconds (%d bytes)", device, time.Since(start).Seconds(), written)
	if got := hexSum(h); got != want {
		return nil, errImageChecksum(device, info.ID, want, got)
	}
	ins, err := disk.Inspect(d.Dev, d.SizeBytes)
	if err != nil || ins.Layout.Label == "" || len(ins.Layout.Partitions) == 0 {
		return nil, errExecution(fmt.Sprintf("No partitions found on the device %s after writing the image.", device))
	}
	var id [4]byte
	if _, err := d.Dev.ReadAt(id[:], 440); err != nil {
		return nil, errImageWrite(device, err)
	}
	root := fmt.Sprintf("0x%08x", binary.LittleEndian.Uint32(id[:]))
	return &deployState{imageID: info.ID, wholeDisk: true, uuids: map[string]any{
		"root uuid": root, "partitions": map[string]any{}, "efi system partition uuid": nil,
	}}, nil
}

// readErr marks an error of the image source, not the disk.
type readErr struct{ error }

func (e readErr) Unwrap() error { return e.error }

func isReadErr(err error) bool {
	var r readErr
	return errors.As(err, &r)
}

// streamToDisk writes r onto dev in whole 512-byte sectors (the last one
// read, merged and written back; zero runs as holes where dev can),
// refusing to run past the disk's end.
func streamToDisk(ctx context.Context, r io.Reader, dev ramdisk.BlockDevice, size int64) (int64, error) {
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return off, err
		}
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if off+int64(n) > size {
				return off, fmt.Errorf("image is larger than the disk (%d bytes)", size)
			}
			whole := n &^ (disk.SectorSize - 1)
			if whole > 0 {
				if werr := disk.WriteSparse(dev, buf[:whole], off); werr != nil {
					return off, werr
				}
			}
			if tail := n - whole; tail > 0 {
				sec := make([]byte, disk.SectorSize)
				if _, rerr := dev.ReadAt(sec, off+int64(whole)); rerr != nil && rerr != io.EOF {
					return off, rerr
				}
				copy(sec, buf[whole:n])
				if _, werr := dev.WriteAt(sec, off+int64(whole)); werr != nil {
					return off, werr
				}
			}
			off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return off, nil
		}
		if err != nil {
			return off, readErr{err}
		}
	}
}

// writePartitionImage downloads a partition image to a file (IPA caches it
// in /tmp), checks it, and lays the disk out with it as Ironic's
// work_on_disk does.
func (a *Agent) writePartitionImage(ctx context.Context, info *imageInfo, d ramdisk.Disk, configdrive *string) (*deployState, error) {
	device := "/dev/" + d.Name
	if f := strings.ToLower(info.DiskFormat); f != "" && f != "raw" {
		return nil, errImageWrite(device, fmt.Errorf("disk_format %q: this agent writes raw images only", info.DiskFormat))
	}
	if info.RootMB <= 0 {
		return nil, errInvalidParams("Image 'root_mb' must be set for partition images.")
	}
	h, want, err := hashFor(info)
	if err != nil {
		return nil, err
	}
	if want, err = a.expectedChecksum(ctx, info, want); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(a.cfg.TempDir, "ipa-image-"+safeName(info.ID)+"-")
	if err != nil {
		return nil, errImageDownload(info.ID, err.Error())
	}
	defer os.Remove(f.Name())
	defer f.Close()
	location := f.Name()
	var size int64
	err = a.withRetries(ctx, func() error {
		h.Reset()
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if err := f.Truncate(0); err != nil {
			return err
		}
		body, err := a.openImage(ctx, info)
		if err != nil {
			return err
		}
		defer body.Close()
		size, err = io.Copy(f, &hashingReader{r: body, h: h})
		if err != nil {
			return errImageDownload(info.ID, fmt.Sprintf("Unable to write image to %s. Error: %v", location, err))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if got := hexSum(h); got != want {
		return nil, errImageChecksum(location, info.ID, want, got)
	}
	node := a.cachedNode()
	pp := disk.PartitionParams{
		BootMode:        bootModeOf(info, node),
		BootOption:      bootOptionOf(info, node),
		DiskLabel:       firstNonEmpty(info.DiskLabel, capability(node, "disk_label")),
		RootMB:          int64(info.RootMB),
		SwapMB:          int64(info.SwapMB),
		EphemeralMB:     int64(info.EphemeralMB),
		EphemeralFormat: info.EphemeralFormat,
	}
	if configdrive != nil && *configdrive != "" {
		cd, err := a.configDriveBytes(ctx, info, *configdrive)
		if err != nil {
			return nil, err
		}
		pp.ConfigDrive = cd
	}
	a.say("writing partition image %s (%d bytes) to %s: boot_mode=%s boot_option=%s root_mb=%d", info.ID, size, device, pp.BootMode, pp.BootOption, pp.RootMB)
	res, err := disk.DeployPartitionImage(ctx, d.Dev, d.SizeBytes, f, size, pp)
	if err != nil {
		return nil, errImageWrite(device, err)
	}
	parts := map[string]any{}
	for _, pt := range res.Layout.Partitions {
		if pt.Role != "" {
			parts[pt.Role] = partitionDevice(device, pt.Number)
		}
	}
	var esp any
	if res.ESPUUID != "" {
		esp = res.ESPUUID
	}
	return &deployState{imageID: info.ID, uuids: map[string]any{
		"partitions": parts, "root uuid": res.RootUUID, "efi system partition uuid": esp,
	}}, nil
}

// configDriveBytes returns the config drive as Ironic passes it: base64
// gzip text, or a URL to fetch that text from.
func (a *Agent) configDriveBytes(ctx context.Context, info *imageInfo, cd string) ([]byte, error) {
	if strings.HasPrefix(cd, "http://") || strings.HasPrefix(cd, "https://") {
		body, err := a.openURL(ctx, info.ID, cd)
		if err != nil {
			return nil, err
		}
		defer body.Close()
		b, err := io.ReadAll(io.LimitReader(body, 2*disk.ConfigDriveMaxBytes))
		if err != nil {
			return nil, errImageDownload(cd, err.Error())
		}
		return b, nil
	}
	if _, err := base64.StdEncoding.DecodeString(cd); err != nil {
		return nil, errExecution(fmt.Sprintf("Config drive is not valid base64: %v", err))
	}
	return []byte(cd), nil
}

func partitionDevice(device string, n int) string {
	if last := device[len(device)-1]; last >= '0' && last <= '9' {
		return device + "p" + strconv.Itoa(n)
	}
	return device + strconv.Itoa(n)
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '.' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func (a *Agent) cachedNode() map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.node
}

// capability reads key from the node's instance_info or properties
// capabilities ("k1:v1,k2:v2" or a dict), instance_info first as Ironic.
func capability(node map[string]any, key string) string {
	for _, where := range []string{"instance_info", "properties"} {
		m, _ := node[where].(map[string]any)
		switch caps := m["capabilities"].(type) {
		case string:
			for _, kv := range strings.Split(caps, ",") {
				if k, v, ok := strings.Cut(kv, ":"); ok && strings.TrimSpace(k) == key {
					return strings.TrimSpace(v)
				}
			}
		case map[string]any:
			if v, ok := caps[key].(string); ok {
				return v
			}
		}
	}
	return ""
}

// bootModeOf is the target boot mode: image_info's, else the node's
// (IPA's utils.get_node_boot_mode), else bios.
func bootModeOf(info *imageInfo, node map[string]any) string {
	ii, _ := node["instance_info"].(map[string]any)
	dii, _ := node["driver_internal_info"].(map[string]any)
	s := func(m map[string]any, k string) string { v, _ := m[k].(string); return v }
	return firstNonEmpty(info.DeployBootMode, info.BootMode, s(ii, "deploy_boot_mode"), s(dii, "deploy_boot_mode"),
		capability(node, "boot_mode"), s(node, "boot_mode"), disk.BootModeBIOS)
}

// bootOptionOf is the boot option; Ironic's default is local.
func bootOptionOf(info *imageInfo, node map[string]any) string {
	return firstNonEmpty(info.BootOption, capability(node, "boot_option"), disk.BootOptionLocal)
}

// getPartitionUUIDs is standby.get_partition_uuids.
func (a *Agent) getPartitionUUIDs() map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.deployed == nil {
		a.log.printf("no partition UUIDs recorded yet, prepare_image has to be called before get_partition_uuids")
		return map[string]any{}
	}
	return a.deployed.uuids
}

// syncDisks flushes the disks that can be flushed (standby.sync).
func (a *Agent) syncDisks(ctx context.Context) error {
	disks, err := a.cfg.Env.Disks(ctx)
	if err != nil {
		return errExecution("Flushing file system buffers failed. Error: " + err.Error())
	}
	for _, d := range disks {
		if s, ok := d.Dev.(interface{ Sync() error }); ok {
			if err := s.Sync(); err != nil {
				return errExecution("Flushing file system buffers failed. Error: " + err.Error())
			}
		}
	}
	return nil
}

// shutdown is standby.power_off / run_image: sync, then power off or
// reboot once the command's answer went out.
func (a *Agent) shutdown(ctx context.Context, c *command, poweroff bool) (any, error) {
	if err := a.syncDisks(ctx); err != nil {
		a.say("failed to sync file system buffers: %v", err)
	}
	waitResponded(ctx, c)
	var err error
	if poweroff {
		a.say("powering off system")
		a.milestone(events.AgentPowerOff, "")
		err = a.cfg.Env.PowerOff(ctx)
	} else {
		a.say("rebooting system")
		a.milestone(events.AgentReboot, "")
		err = a.cfg.Env.Reboot(ctx)
	}
	if err != nil && ctx.Err() == nil {
		return nil, &restError{Type: "SystemRebootError", Code: 500, Message: "Error rebooting system",
			Details: fmt.Sprintf("Reboot script failed with exit code 1. stdout: . stderr: %v.", err)}
	}
	return nil, nil
}

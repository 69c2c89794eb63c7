@libvirt
Feature: Deploying real VMs
  The deploys of deploy.feature on libvirt VMs: QEMU with SeaBIOS or OVMF,
  the NIC's iPXE ROM, and a real Linux kernel running metalbed's deploy
  ramdisk (`metalbed ramdisk build`) as /init. The VMs sit on a bridge
  whose only other port leads into a network namespace metalbed creates,
  where the provisioner's DHCP, TFTP and HTTP servers and its API for
  ramdisks listen; their BMCs are metalbed's, on loopback, as for
  simulated machines. Run with `metalbed scenario run --backend libvirt`
  or ci/libvirt/test.sh (root, libvirtd running; TCG here: each boot of
  a kernel takes some 10 s).

  Scenario Outline: <iface> deploy of a partition image, instance booted from the network, undeploy with cleaning, real VM
    Given a metalbed testbed with 1 bios machine
    And node "node-0" is available
    And node "node-0" uses the <iface> deploy interface
    And node "node-0" has automated cleaning on
    And node "node-0" has instance_info for a partition image booted from the network
    When I deploy node "node-0"
    Then node "node-0" is active
    And node "node-0" has no last_error
    And the disk of machine "node-0" holds the image
    And machine "node-0" boots its instance from the network
    And the timeline of node "node-0" shows "dhcp.ack" before "<up>"
    And the timeline of node "node-0" shows "<up>" before "<written>"
    And the timeline of node "node-0" shows "<written>" before "conductor.active"
    And the timeline of node "node-0" shows "conductor.active" before "instance.booted"
    When I undeploy node "node-0"
    Then node "node-0" ends in provision state "available"
    And the disk of machine "node-0" holds no partition table

    Examples:
      | iface  | up         | written                 |
      | iscsi  | ramdisk.up | conductor.image_written |
      | direct | agent.up   | agent.image.written     |

  Scenario Outline: <iface> deploy of a partition image, local boot through GRUB in <mode> mode, real VM
    Given a metalbed testbed with 1 <mode> machine
    And node "node-0" is available
    And node "node-0" uses the <iface> deploy interface
    And node "node-0" has instance_info for a "partition" image
    When I deploy node "node-0"
    Then node "node-0" is active
    And node "node-0" has no last_error
    And the disk of machine "node-0" holds the image
    And machine "node-0" boots its instance from its disk
    And the timeline of node "node-0" shows "<up>" before "<written>"
    And the timeline of node "node-0" shows "<written>" before "<bootloader>"
    And the timeline of node "node-0" shows "<bootloader>" before "instance.booted"

    Examples:
      | iface  | mode | up         | written                 | bootloader         |
      | iscsi  | bios | ramdisk.up | conductor.image_written | ramdisk.bootloader |
      | iscsi  | uefi | ramdisk.up | conductor.image_written | ramdisk.bootloader |
      | direct | bios | agent.up   | agent.image.written     | agent.bootloader   |

  Scenario Outline: <iface> deploy of a whole-disk image in <mode> mode, real VM
    Given a metalbed testbed with 1 <mode> machine
    And node "node-0" is available
    And node "node-0" uses the <iface> deploy interface
    And node "node-0" has instance_info for a "whole-disk" image
    When I deploy node "node-0"
    Then node "node-0" is active
    And node "node-0" has no last_error
    And the disk of machine "node-0" holds the image
    And machine "node-0" boots its instance from its disk

    Examples:
      | iface  | mode |
      | iscsi  | uefi |
      | direct | bios |

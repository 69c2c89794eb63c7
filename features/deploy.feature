@deploy
Feature: Deploying nodes
  A node goes from available to active and back. With the fake-hardware
  type the conductor's state machine runs alone (no machine is touched);
  with the ipmi type a simulated machine is deployed over PXE and iSCSI, or
  by the agent, on real sockets.

  Scenario: The conductor's deploy state machine runs on fake hardware
    Given the provisioner is running
    And node "fake-0" is enrolled with the fake-hardware driver
    And node "fake-0" is moved to "manageable" with "manage"
    And node "fake-0" is moved to "available" with "provide"
    When I ask to "active" node "fake-0"
    Then the response status is 202
    And node "fake-0" reaches provision state "active"
    And node "fake-0" has no last_error
    When I ask to "rebuild" node "fake-0"
    Then the response status is 202
    And node "fake-0" reaches provision state "active"
    When I ask to "deleted" node "fake-0"
    Then the response status is 202
    And node "fake-0" reaches provision state "available"
    And node "fake-0" has no last_error

  Scenario: An active node cannot be managed
    Given the provisioner is running
    And node "fake-0" is enrolled with the fake-hardware driver
    And node "fake-0" is moved to "manageable" with "manage"
    And node "fake-0" is moved to "available" with "provide"
    And node "fake-0" is moved to "active" with "active"
    When I ask to "manage" node "fake-0"
    Then the response status is 400
    And the error is Ironic's "Client" fault saying "The requested action "manage" can not be performed on node "{fake-0}" while it is in state "active"."

  # The scenarios below run one `metalbed up --enroll` each: machines with
  # their BMCs, the provisioner, the DHCP/TFTP/HTTP boot servers and the
  # timeline. The iscsi deploy interface is the ramdisk's PXE/iSCSI deploy;
  # direct is the agent (the same deploy ramdisk, run as the agent).

  Scenario Outline: Local-boot deploy of a partition image, <iface> in <mode> mode
    Given a metalbed testbed with 1 <mode> machine
    And node "node-0" is available
    And node "node-0" uses the <iface> deploy interface
    And node "node-0" has instance_info for a "partition" image
    When I deploy node "node-0"
    Then node "node-0" is active
    And node "node-0" has no last_error
    And the disk of machine "node-0" holds the image
    And machine "node-0" boots from its disk in <mode> mode
    And the timeline of node "node-0" shows "dhcp.ack" before "conductor.active"
    And the timeline of node "node-0" shows "tftp.file" before "<up>"
    And the timeline of node "node-0" shows "<written>" before "<bootloader>"
    And the timeline of node "node-0" shows "<bootloader>" before "instance.booted"
    And the timeline of node "node-0" shows "<bootloader>" naming "GRUB 2"

    Examples:
      | iface  | mode | up         | written                 | bootloader         |
      | iscsi  | bios | ramdisk.up | conductor.image_written | ramdisk.bootloader |
      | iscsi  | uefi | ramdisk.up | conductor.image_written | ramdisk.bootloader |
      | direct | bios | agent.up   | agent.image.written     | agent.bootloader   |
      | direct | uefi | agent.up   | agent.image.written     | agent.bootloader   |

  Scenario Outline: Whole-disk image deploy, <iface> in <mode> mode
    Given a metalbed testbed with 1 <mode> machine
    And node "node-0" is available
    And node "node-0" uses the <iface> deploy interface
    And node "node-0" has instance_info for a "whole-disk" image
    When I deploy node "node-0"
    Then node "node-0" is active
    And node "node-0" has no last_error
    And the disk of machine "node-0" holds the image
    And machine "node-0" boots from its disk in <mode> mode
    And the timeline of node "node-0" shows "<written>"

    Examples:
      | iface  | mode | written                 |
      | iscsi  | bios | conductor.image_written |
      | iscsi  | uefi | conductor.image_written |
      | direct | bios | agent.image.written     |
      | direct | uefi | agent.image.written     |

  Scenario: Undeploy powers the machine off and the node returns to available
    Given a metalbed testbed with 1 bios machine
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image
    And I deploy node "node-0"
    And node "node-0" is active
    When I undeploy node "node-0"
    Then node "node-0" ends in provision state "available"
    And node "node-0" has no last_error
    And the BMC of machine "node-0" reports chassis power off

  Scenario Outline: Undeploy with automated cleaning wipes the disk, <iface>
    Given a metalbed testbed with 1 bios machine
    And node "node-0" is available
    And node "node-0" uses the <iface> deploy interface
    And node "node-0" has automated cleaning on
    And node "node-0" has instance_info for a "partition" image
    And I deploy node "node-0"
    And node "node-0" is active
    When I undeploy node "node-0"
    Then node "node-0" ends in provision state "available"
    And node "node-0" has no last_error
    And the timeline of node "node-0" shows "conductor.disk_wiped"
    And the disk of machine "node-0" holds no partition table
    And the BMC of machine "node-0" reports chassis power off

    Examples:
      | iface  |
      | iscsi  |
      | direct |

  Scenario: Rebuild writes the image again
    Given a metalbed testbed with 1 bios machine
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image
    And I deploy node "node-0"
    And node "node-0" is active
    When I rebuild node "node-0"
    Then the timeline of node "node-0" shows "conductor.image_written" 2 times
    And node "node-0" is active
    And node "node-0" has no last_error
    And the disk of machine "node-0" holds the image
    And machine "node-0" boots from its disk in bios mode 2 times

  Scenario: A disk too small for root_gb fails the deploy with the reason
    Given a metalbed testbed with 1 bios machine with 1 GiB disk
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image with root_gb 1
    When I deploy node "node-0"
    Then node "node-0" ends in provision state "deploy failed"
    And node "node-0" has last_error containing "too small"

  Scenario: Two nodes deploy at once on one conductor
    Given a metalbed testbed with 2 uefi machines
    And node "node-0" is available
    And node "node-1" is available
    And node "node-0" has instance_info for a "whole-disk" image
    And node "node-1" has instance_info for a "whole-disk" image
    When I deploy node "node-0"
    And I deploy node "node-1"
    Then node "node-0" is active
    And node "node-1" is active
    And machine "node-0" boots from its disk in uefi mode
    And machine "node-1" boots from its disk in uefi mode

  Scenario: Abort while waiting for the ramdisk's callback
    Given a metalbed testbed with 1 bios machine
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image
    And the fault "never calls back" is injected at layer "ramdisk" for node "node-0"
    And I deploy node "node-0"
    And node "node-0" reaches provision state "wait call-back"
    When I ask to "abort" node "node-0"
    Then the response status is 202
    And node "node-0" ends in provision state "deploy failed"

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

  # The scenarios below need `metalbed up` to run the provisioner with the
  # DHCP/TFTP/HTTP boot servers and --enroll (branch deploy, not yet on main):
  # their steps are implemented and pass against that build
  # (METALBED_SCENARIO_BIN=… go test ./scenarios -args -godog.tags=@deploy);
  # on a build without it the first step reports the missing piece. Drop the
  # @pending tag once main has it.

  @pending
  Scenario Outline: Local-boot deploy of a partition image over PXE and iSCSI
    Given a metalbed testbed with 1 <mode> machine
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image
    When I deploy node "node-0"
    Then node "node-0" is active
    And node "node-0" has no last_error
    And the disk of machine "node-0" holds the image
    And machine "node-0" boots from its disk in <mode> mode
    And the timeline of node "node-0" shows "dhcp.ack" before "conductor.active"
    And the timeline of node "node-0" shows "tftp.file" before "ramdisk.up"
    And the timeline of node "node-0" shows "iscsi.login" before "conductor.image_written"
    And the timeline of node "node-0" shows "ramdisk.bootloader" before "instance.booted"

    Examples:
      | mode |
      | bios |
      | uefi |

  @pending
  Scenario Outline: Whole-disk image deploy, local boot
    Given a metalbed testbed with 1 <mode> machine
    And node "node-0" is available
    And node "node-0" has instance_info for a "whole-disk" image
    When I deploy node "node-0"
    Then node "node-0" is active
    And the disk of machine "node-0" holds the image
    And machine "node-0" boots from its disk in <mode> mode
    And the timeline of node "node-0" shows "conductor.image_written"

    Examples:
      | mode |
      | bios |
      | uefi |

  @pending
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

  @pending
  Scenario: A disk too small for root_gb fails the deploy with the reason
    Given a metalbed testbed with 1 bios machine with 1 GiB disk
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image with root_gb 1
    When I deploy node "node-0"
    Then node "node-0" ends in provision state "deploy failed"
    And node "node-0" has last_error containing "too small"

  @pending
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

  @pending
  Scenario: Agent deploy of a whole-disk image
    Given a metalbed testbed with 1 uefi machine
    And node "node-0" is available
    And node "node-0" uses the agent deploy interface
    And node "node-0" has instance_info for a "whole-disk" image
    When I deploy node "node-0"
    Then node "node-0" is active
    And the disk of machine "node-0" holds the image

  @pending
  Scenario: Abort while waiting for the ramdisk's callback
    Given a metalbed testbed with 1 bios machine
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image
    And the fault "never calls back" is injected at layer "ramdisk" for node "node-0"
    And I deploy node "node-0"
    And node "node-0" reaches provision state "wait call-back"
    When I ask to "abort" node "node-0"
    Then node "node-0" ends in provision state "deploy failed"

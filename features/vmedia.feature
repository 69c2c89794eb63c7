@vmedia
Feature: Deploying from Redfish virtual media with metalbed's conductor
  `metalbed up --enroll --enroll-driver redfish --boot-interface
  redfish-virtual-media` enrolls every machine with the redfish hardware
  type and Ironic's redfish-virtual-media boot interface (deploy interface
  direct, boot_option local). The conductor builds an ISO of the deploy
  kernel and ramdisk with the agent's command line (its token on it),
  publishes it on the HTTP boot server, has the BMC insert it as the
  virtual CD and boot it once; the agent deploys the image and the
  instance boots from disk, the CD ejected and the ISO removed. Faults of
  the BMC and of the ISO's web server end the deploy as Ironic ends it.
  On real VMs (@libvirt) the BMC fetches the ISO from the HTTP boot server
  in the boot network and puts it in the VM's SATA CD drive; SeaBIOS boots
  its isolinux, OVMF its GRUB, and the ramdisk gets its address by DHCP.

  Scenario Outline: A <mode> machine deploys a <kind> image from virtual media and undeploys
    Given a virtual media testbed with 1 <mode> machine
    And node "node-0" is available
    And node "node-0" has instance_info for a "<kind>" image
    And node "node-0" has automated cleaning on
    When I deploy node "node-0"
    Then node "node-0" is active
    And node "node-0" has no last_error
    And the disk of machine "node-0" holds the image
    And machine "node-0" boots from its disk in <mode> mode
    And the console of machine "node-0" shows "<cd>"
    And the console of machine "node-0" shows "boot_method=vmedia"
    And the timeline of node "node-0" shows "bmc.redfish.virtual_media" before "agent.lookup"
    # The agent records its first heartbeat when the answer arrives, which on
    # a loaded host can be after the conductor, acting on it, starts
    # write_image; its lookup comes strictly before.
    And the timeline of node "node-0" shows "agent.lookup" before "conductor.write_image"
    And the timeline of node "node-0" shows "agent.image.written" before "instance.booted"
    And the boot ISO of node "node-0" is no longer published
    When I undeploy node "node-0"
    Then node "node-0" ends in provision state "available"
    And the disk of machine "node-0" holds no partition table
    And the boot ISO of node "node-0" is no longer published

    Examples:
      | mode | kind       | cd                                     |
      | bios | partition  | Booting from virtual CD (legacy BIOS)  |
      | uefi | whole-disk | Booting from virtual CD (UEFI)         |

  @libvirt
  Scenario Outline: A real <mode> VM deploys a <kind> image from virtual media and undeploys
    Given a virtual media testbed with 1 <mode> machine
    And node "node-0" is available
    And node "node-0" has instance_info for a "<kind>" image
    And node "node-0" has automated cleaning on
    When I deploy node "node-0"
    Then node "node-0" is active
    And node "node-0" has no last_error
    And the disk of machine "node-0" holds the image
    And machine "node-0" boots its instance from its disk
    And the timeline of node "node-0" shows "machine.boot" naming "cdrom"
    And the timeline of node "node-0" shows "machine.console" naming "boot_method=vmedia"
    And the timeline of node "node-0" shows "bmc.redfish.virtual_media" before "agent.lookup"
    And the timeline of node "node-0" shows "agent.heartbeat" before "agent.image.written"
    And the timeline of node "node-0" shows "agent.image.written" before "instance.booted"
    And the boot ISO of node "node-0" is no longer published
    When I undeploy node "node-0"
    Then node "node-0" ends in provision state "available"
    And the disk of machine "node-0" holds no partition table
    And the boot ISO of node "node-0" is no longer published

    Examples:
      | mode | kind       |
      | bios | partition  |
      | uefi | whole-disk |

  Scenario: The ISO's URL answers 404: the machine cannot boot it and the deploy times out
    Given a virtual media testbed with 1 bios machine and a deploy callback timeout of 20 seconds
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image
    And the boot ISO of node "node-0" is answered 404 by the HTTP boot server
    When I deploy node "node-0"
    Then node "node-0" ends in provision state "deploy failed"
    And node "node-0" has last_error containing "Timeout reached while waiting for callback for node"
    And the timeline of node "node-0" shows "fault.http.status"
    And the timeline of node "node-0" shows "machine.boot-failed"

  Scenario: InsertMedia answered 503 twice is retried and the deploy goes on
    Given a virtual media testbed with 1 bios machine
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image
    And the BMC of machine "node-0" answers InsertMedia with 503 2 times
    When I deploy node "node-0"
    Then node "node-0" is active
    And the timeline of node "node-0" shows "fault.redfish.status" 2 times
    And machine "node-0" boots from its disk in bios mode

  Scenario: InsertMedia answered 503 every time fails the deploy with the BMC's error
    Given a virtual media testbed with 1 bios machine
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image
    And the BMC of machine "node-0" answers InsertMedia with 503
    When I deploy node "node-0"
    Then node "node-0" ends in provision state "deploy failed"
    And node "node-0" has last_error containing "returned code 503"
    And the timeline of node "node-0" shows "fault.redfish.status"

  Scenario: A BMC that drops the Cd boot override: the machine never boots the agent
    Given a virtual media testbed with 1 bios machine and a deploy callback timeout of 20 seconds
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image
    And the BMC of machine "node-0" drops the next boot override
    When I deploy node "node-0"
    Then node "node-0" ends in provision state "deploy failed"
    And node "node-0" has last_error containing "Timeout reached while waiting for callback for node"
    And the timeline of node "node-0" shows "fault.redfish.drop-boot-override"

  Scenario: The medium is ejected during the boot: the machine cannot boot and the deploy times out
    Given a virtual media testbed with 1 bios machine and a deploy callback timeout of 20 seconds
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image
    And the BMC of machine "node-0" ejects the medium after 2 reads of the next boot from it
    When I deploy node "node-0"
    Then node "node-0" ends in provision state "deploy failed"
    And node "node-0" has last_error containing "Timeout reached while waiting for callback for node"
    And the timeline of node "node-0" shows "fault.redfish.eject-during-boot" before "machine.boot-failed"
    And the timeline of node "node-0" shows "machine.boot-failed" naming "medium ejected"
    And the console of machine "node-0" shows "virtual CD: read error: the medium was ejected"

@boot
Feature: Boot device semantics: one-time, persistent and EFI
  Ironic sets the boot device through the BMC's boot flags (IPMI chassis
  boot option parameter 5): "chassis bootdev" for legacy BIOS, a raw Set
  System Boot Options with the EFI bit for UEFI. metalbed's machines keep
  those bits exactly and consume a one-time override at the next boot, as
  firmware does.

  Scenario Outline: Setting the boot device through the API stores Ironic's bits
    Given a metalbed environment with 1 machine
    And machine "node-0" is enrolled with the ipmi driver in <mode> boot mode
    And node "node-0" is manageable
    When I set the boot device of node "node-0" to "pxe" <how> through the API
    Then the BMC of machine "node-0" holds boot flags "<flags>"
    And "chassis bootparam get 5" on machine "node-0" shows:
      """
      Boot Flag Valid
      <applies>
      <firmware>
      Boot Device Selector : Force PXE
      """
    And the API reports the boot device of node "node-0" as "pxe" with persistent <persistent>

    Examples:
      | mode | how                    | flags      | applies                          | firmware                          | persistent |
      | bios | for the next boot only | 8004000000 | Options apply to only next boot  | BIOS PC Compatible (legacy) boot  | false      |
      | bios | persistently           | c004000000 | Options apply to all future boots | BIOS PC Compatible (legacy) boot | true       |
      | uefi | for the next boot only | a004000000 | Options apply to only next boot  | BIOS EFI boot                     | false      |
      | uefi | persistently           | e004000000 | Options apply to all future boots | BIOS EFI boot                    | true       |

  Scenario: Setting the disk as boot device through the API
    Given a metalbed environment with 1 machine
    And machine "node-0" is enrolled with the ipmi driver in uefi boot mode
    And node "node-0" is manageable
    When I set the boot device of node "node-0" to "disk" persistently through the API
    Then the BMC of machine "node-0" holds boot flags "e008000000"
    And the API reports the boot device of node "node-0" as "disk" with persistent true

  Scenario Outline: The commands Ironic sends with ipmitool store the same bits
    Given a metalbed environment with 1 machine
    When I run ipmitool "<command>" against the BMC of machine "node-0"
    Then the command succeeds
    And the BMC of machine "node-0" holds boot flags "<flags>"

    Examples:
      | command                                          | flags      |
      | chassis bootdev pxe                              | 8004000000 |
      | chassis bootdev pxe options=persistent           | c004000000 |
      | chassis bootdev disk options=persistent          | c008000000 |
      | chassis bootdev pxe options=efiboot              | a004000000 |
      | raw 0x00 0x08 0x05 0xa0 0x04 0x00 0x00 0x00      | a004000000 |
      | raw 0x00 0x08 0x05 0xe0 0x04 0x00 0x00 0x00      | e004000000 |
      | raw 0x00 0x08 0x05 0xe0 0x08 0x00 0x00 0x00      | e008000000 |

  Scenario: Ironic's "disable the boot timeout" raw command is accepted
    Given a metalbed environment with 1 machine
    When I run ipmitool "raw 0x00 0x08 0x03 0x08" against the BMC of machine "node-0"
    Then the command succeeds

  Scenario Outline: A one-time override is consumed by one power-on
    Given a metalbed environment with 1 <machine> machine
    And machine "node-0" is enrolled with the ipmi driver in <mode> boot mode
    And node "node-0" is manageable
    And I set the boot device of node "node-0" to "pxe" for the next boot only through the API
    And the BMC of machine "node-0" holds boot flags "<flags>"
    When node "node-0" is powered "power on" through the API
    Then the console of machine "node-0" shows "Boot device: pxe (one-time override)"
    And the console of machine "node-0" shows "<booting>"
    And the BMC of machine "node-0" holds boot flags "0000000000"
    And "chassis bootparam get 5" on machine "node-0" shows:
      """
      Boot Device Selector : No override
      """

    Examples:
      | machine | mode | flags      | booting                         |
      | uefi    | bios | 8004000000 | Booting from network (legacy BIOS PXE) |
      | bios    | uefi | a004000000 | Booting from network (UEFI PXE) |

  Scenario Outline: A persistent override stays across power cycles
    Given a metalbed environment with 1 machine
    And machine "node-0" is enrolled with the ipmi driver in <mode> boot mode
    And node "node-0" is manageable
    And I set the boot device of node "node-0" to "pxe" persistently through the API
    When node "node-0" is powered "power on" through the API
    And node "node-0" is powered "rebooting" through the API
    Then the console of machine "node-0" shows "Booting from network" 2 times
    And the BMC of machine "node-0" holds boot flags "<flags>"
    And the API reports the boot device of node "node-0" as "pxe" with persistent true

    Examples:
      | mode | flags      |
      | bios | c004000000 |
      | uefi | e004000000 |

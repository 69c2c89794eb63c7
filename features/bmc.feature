@bmc
Feature: BMC robustness over IPMI
  Each machine's BMC speaks IPMI v2.0 (RMCP+) and IPMI 1.5 as hardware
  does: it checks credentials, negotiates the cipher suites Ironic and
  ipmitool use, records power events in its SEL and carries the machine's
  serial console over SOL.

  Background:
    Given a metalbed environment with 1 machine

  Scenario Outline: Wrong credentials are refused
    When I run ipmitool "<credentials> chassis power status" against the BMC of machine "node-0"
    Then the command fails
    And its output contains "Unable to establish IPMI v2 / RMCP+ session"
    And its output does not contain "Chassis Power is"

    Examples:
      | credentials               |
      | -U admin -P wrong         |
      | -U nobody -P password     |
      | -U admin -P passwordx     |

  Scenario Outline: Cipher suites Ironic uses are accepted, suite 0 is refused
    When I run ipmitool "-C <suite> chassis power status" against the BMC of machine "node-0"
    Then the command <result>
    And its output <output> "Chassis Power is off"

    Examples:
      | suite | result   | output           |
      | 3     | succeeds | contains         |
      | 17    | succeeds | contains         |
      | 0     | fails    | does not contain |

  Scenario: IPMI 1.5 sessions work for old clients
    When I run ipmitool "-I lan chassis power status" against the BMC of machine "node-0"
    Then the command succeeds
    And its output says "Chassis Power is off"

  Scenario: chassis status shows the machine's power
    Given machine "node-0" is powered on through its BMC
    When I run ipmitool "chassis status" against the BMC of machine "node-0"
    Then the command succeeds
    And its output contains "System Power         : on"

  Scenario Outline: The SEL records power events
    Given machine "node-0" is powered on through its BMC
    When I run ipmitool "chassis power <action>" against the BMC of machine "node-0"
    Then the command succeeds
    And the system event log of machine "node-0" records "<record>"

    Examples:
      | action | record                            |
      | off    | Power Unit #0x01 \| Power off/down \| Asserted |
      | cycle  | Power Unit #0x01 \| Power cycle \| Asserted    |

  Scenario: A power-on through the API is recorded in the SEL
    Given node "node-0" is manageable
    When node "node-0" is powered "power on" through the API
    Then the system event log of machine "node-0" records "Power off/down | Deasserted"

  Scenario: A USER-level session may read power but not change it
    When I run ipmitool "-L USER chassis power status" against the BMC of machine "node-0"
    Then the command succeeds
    When I run ipmitool "-L USER chassis power on" against the BMC of machine "node-0"
    Then the command fails
    And its output contains "Insufficient privilege level"
    And the BMC of machine "node-0" reports chassis power off

  Scenario Outline: Malformed and unknown commands get a completion code and the BMC keeps serving
    When I run ipmitool "raw <request>" against the BMC of machine "node-0"
    Then the command fails
    And its output contains "<completion>"
    When I run ipmitool "chassis power status" against the BMC of machine "node-0"
    Then the command succeeds
    And its output says "Chassis Power is off"

    Examples:
      | request                        | completion                         |
      | 0x00 0x08 0x05 0xe0            | rsp=0xc7): Request data length invalid |
      | 0x00 0xff                      | rsp=0xc1): Invalid command         |
      | 0x3a 0x01                      | rsp=0xc1): Invalid command         |

  Scenario: The BMC identifies itself as IPMI 2.0
    When I run ipmitool "mc info" against the BMC of machine "node-0"
    Then the command succeeds
    And its output contains "IPMI Version              : 2.0"

  Scenario Outline: SOL shows the machine's console as it boots
    When I attach to the serial console of machine "node-0" with cipher suite <suite>
    And machine "node-0" is powered on through its BMC
    Then the serial console shows "metalbed SimBIOS"
    And the serial console shows "Boot device: boot order (disk, network)"
    And the serial console shows "No bootable device."
    And I leave the serial console with "~."

    Examples:
      | suite |
      | 3     |
      | 17    |

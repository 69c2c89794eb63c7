# A pyghmi BMC on 127.0.0.1:<port> (the IPMI peer for the baremetal CLI
# interop test). Modelled on pyghmi's own fakebmc, bound to loopback.
# Usage: /usr/bin/python3 pyghmi_bmc.py PORT USER PASSWORD
import sys

import pyghmi.ipmi.bmc as bmc


class Bmc(bmc.Bmc):
    def __init__(self, authdata, port):
        super().__init__(authdata, port=port, address='127.0.0.1')
        self.powerstate = 'off'
        self.bootdevice = 'default'

    def get_boot_device(self):
        return self.bootdevice

    def set_boot_device(self, bootdevice):
        self.bootdevice = bootdevice

    def get_power_state(self):
        return self.powerstate

    def power_off(self):
        self.powerstate = 'off'

    def power_on(self):
        self.powerstate = 'on'

    def power_reset(self):
        pass

    def power_cycle(self):
        self.powerstate = 'on'

    def power_shutdown(self):
        self.powerstate = 'off'

    def cold_reset(self):
        pass

    def is_active(self):
        return self.powerstate == 'on'


def main():
    port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    b = Bmc({user: password}, port)
    print('ready', flush=True)
    b.listen()


if __name__ == '__main__':
    sys.exit(main())

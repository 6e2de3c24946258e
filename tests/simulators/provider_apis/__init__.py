"""The provider APIs the simulator (``tests.simulators.providers``) answers for, one module each."""

//! Open_vSwitch schema helpers.

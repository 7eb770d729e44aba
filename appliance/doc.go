// Package appliance holds the appliance test (build tag "appliance", run by
// "make test-appliance"): it builds the .deb, boots a Debian bookworm
// container with systemd-nspawn, installs the package there and checks
// the service, a real client login, upgrades and purge. It needs root,
// mmdebstrap, systemd-container and lintian, and touches nothing on the
// host outside its temporary directory and the root filesystem cache.
package appliance

// Package installer will provision an Ubuntu LTS host for hearth: it is
// what `sudo hearth setup`, `hearth plan` and `hearth doctor` run, as root.
//
// What will live here (DESIGN.md, decision 10):
//   - a wizard that asks the few questions setup needs (domain, data mount,
//     federation allowed or not, Keycloak), with --answers FILE for
//     unattended runs; the prompt library stays behind a small interface so
//     non-interactive runs never touch a terminal;
//   - a plan/apply engine: every host change is a Step with Plan (what would
//     change, as a diff against what is on disk) and Apply; setup shows the
//     whole plan and asks before applying, and re-running changes nothing
//     that is already right;
//   - one file per step: system user and groups (hearth, hearth-admin),
//     the data mount, the configuration rendered from package templates,
//     the systemd unit, nginx vhosts, the ufw profile, SSH AllowGroups;
//   - detection of hand edits, which are shown and never overwritten
//     silently.
//
// installer never imports server: it writes configuration, it does not run
// chat.
package installer

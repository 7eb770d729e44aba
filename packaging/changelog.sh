#!/bin/sh
# Writes the Debian changelog of a hearth build to stdout: one entry for
# VERSION. The package is native (built from this repository by nfpm), so
# the git log is the real history; this entry says where to find it.
set -eu
version=$1
date=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
cat <<END
hearth (${version}) unstable; urgency=medium

  * Build of hearth ${version}; the change history is the git log of
    https://github.com/merveilles/hearth.

 -- Merveilles hearth maintainers <hearth@merveilles.town>  ${date}
END

#!/usr/bin/env bash
# Installs the real services the tests and benchmarks run against, when missing:
# PostgreSQL (catalogue backend), Orthanc + DICOMweb plugin (the hospital PACS peer),
# DCMTK and GDCM (peer codecs for the compression benchmark), dicom3tools (dciodvfy, the
# DICOM validator the synthetic generator's tests run). Services are not started
# here: the test fixtures start their own instances on loopback.
set -euo pipefail
need=()
command -v Orthanc >/dev/null 2>&1 || need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
command -v dcmcjpls >/dev/null 2>&1 || need+=(dcmtk)
command -v gdcmconv >/dev/null 2>&1 || need+=(libgdcm-tools)
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
# A font with Chinese glyphs for the statistics plots (labels are hospitals and doctors).
compgen -G "/usr/share/fonts/truetype/droid/DroidSansFallback*.ttf" >/dev/null \
  || compgen -G "/usr/share/fonts/opentype/noto/NotoSansCJK*" >/dev/null \
  || need+=(fonts-droid-fallback)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
# Chromium: the real browser the serving tests drive through Playwright (never a downloaded one).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# wrk: the HTTP load generator of the serving benchmark (a second process on loopback).
command -v wrk >/dev/null 2>&1 || need+=(wrk)
if [ ${#need[@]} -eq 0 ]; then
  echo "services: all installed"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "services: installing ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"

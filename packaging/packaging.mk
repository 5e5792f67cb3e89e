# Host packages (included by the Makefile).
#
#   make deb            $(OUT)/pkg/meshd_VERSION_ARCH.deb, meshd-controller_VERSION_ARCH.deb
#   make rpm            $(OUT)/pkg/meshd-VERSION-1.ARCH.rpm, meshd-controller-VERSION-1.ARCH.rpm
#   make package-lint   lintian, rpmlint and systemd-analyze verify on them
#
# The packages hold the binaries `make` built in $(OUT) (stripped copies);
# packaging/build-deb.sh and build-rpm.sh do the work, and
# tests/e2e/test_packaging.py uses the same scripts.

PKG_OUT := $(OUT)/pkg

.PHONY: deb rpm package-lint
deb: $(BINS)
	sh packaging/build-deb.sh $(OUT) $(PKG_OUT)

rpm: $(BINS)
	sh packaging/build-rpm.sh $(OUT) $(PKG_OUT)

package-lint: deb rpm
	sh packaging/lint.sh $(PKG_OUT)

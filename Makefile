# kernelos: `make run` boots the demo image on the best device present; `make test` runs the tests.
# Both set up everything on a fresh Debian/Ubuntu machine: a C compiler (apt), a virtual
# environment in .venv with the Python packages, and the project installed editable.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_IMAGE := out/demo.kimg
RUN_COUNT ?= 200

.PHONY: run test setup clean bench conformance

setup: $(STAMP)

# A C compiler builds the cpu device's runtime and kernels; venv support may be a separate package.
$(STAMP): pyproject.toml
	@command -v cc >/dev/null 2>&1 || { echo "installing a C compiler (apt)"; apt-get update -q && apt-get install -y -q gcc libc6-dev; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { echo "installing python3-venv (apt)"; apt-get update -q && apt-get install -y -q python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# compat: the repository on sys.path by a plain .pth line; the default editable finder costs every
	# Python start-up ~25 ms (it imports pathlib, urllib, ...), a tenth of boot's start-up budget
	$(PY) -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m kernelos demo --output $(DEMO_IMAGE) --count $(RUN_COUNT)

test: $(STAMP)
	$(PY) -m pytest -q -ra

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) out build *.egg-info .pytest_cache

# ONNX backend node tests through build + run on the cpu device -> docs/onnx-conformance.md
conformance: $(STAMP)
	$(PY) tools/onnx_conformance.py

# NVIDIA driver vs the CUDA runtime on this machine's GPU (needs /dev/nvidiactl and nvcc): BENCHMARKS.md
.PHONY: bench-nv
bench-nv: $(STAMP)
	$(PY) -m bench.nv_vs_cuda

# Issue 9's end-to-end harness (bench/e2e): kernelos vs onnxruntime (and PyTorch where installed) on the
# MLP, ResNet-18 and GPT-2-small shapes; tables in out/e2e/table.md. On a GPU machine: bash bench/e2e/run_on_gpu.sh
.PHONY: bench-e2e
bench-e2e: $(STAMP)
	$(PY) -m bench.e2e --out out/e2e $(E2E_ARGS)

# --- System image (boot/vm, docs/system-image.md) -----------------------------------------------
# `make vm-image` builds a Linux kernel + initramfs from Debian packages that boots straight into
# `kernelos boot`; `make vm-boot` boots it under QEMU on a serial console (KVM when usable, else
# software emulation). VM_COUNT=N powers the VM off after N inferences; 0 serves until Ctrl-A X.
VM_OUT := out/vm
VM_COUNT ?= 0

.PHONY: vm-tools vm-image vm-boot

# QEMU boots the image; readelf (binutils) checks the image's shared libraries; lz4 compresses the
# initramfs; apt-get and dpkg-deb (always on Debian) fetch and unpack the packages.
vm-tools:
	@command -v qemu-system-x86_64 >/dev/null 2>&1 || { echo "installing QEMU (apt)"; apt-get update -q && apt-get install -y -q --no-install-recommends qemu-system-x86; }
	@command -v readelf >/dev/null 2>&1 || { echo "installing binutils (apt)"; apt-get update -q && apt-get install -y -q binutils; }
	@command -v lz4 >/dev/null 2>&1 || { echo "installing lz4 (apt)"; apt-get update -q && apt-get install -y -q lz4; }

vm-image: $(STAMP) vm-tools
	$(PY) -m boot.vm.build --out $(VM_OUT)

vm-boot: vm-image
	$(PY) -m boot.vm.qemu --out $(VM_OUT) --count $(VM_COUNT)

# The test suite boots the VM (tests/vm), so it needs the tools above.
test: vm-tools

# Host path of a batch-1 inference and the I/O size crossovers on nv:0 (bench/host_io.py).
.PHONY: bench-host-io
bench-host-io: $(STAMP)
	$(PY) -m bench.host_io sizes --device nv:0
	$(PY) -m bench.host_io model --device nv:0 --modes default,staged

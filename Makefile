# The two quick-start commands: `make demo` and `make test`. Both set everything up first (scripts/setup.sh).
VENV ?= .venv
MODEL ?= shufflenet_v2_x1_0
TARGET ?= x86
BIN := $(VENV)/bin

.PHONY: setup demo test clean

setup:
	bash scripts/setup.sh

demo: setup
	mkdir -p build
	$(BIN)/shuffletvm build $(MODEL) --target $(TARGET) -o build/$(MODEL).$(TARGET).so
	$(BIN)/python -c "import numpy as np; np.save('build/input.npy', np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype('float32'))"
	$(BIN)/shuffletvm run build/$(MODEL).$(TARGET).so --input build/input.npy --output build/logits.npy --top 5
	$(BIN)/shuffletvm parity $(MODEL) --target $(TARGET)

test: setup
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

clean:
	rm -rf build

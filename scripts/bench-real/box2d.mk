# bench-real: Box2D 2.3 from the PyPI box2d-py sdist (its setup.py builds a SWIG Python
# extension; here the same Box2D/**/*.cpp compile into a static library) and the
# box2d_bench.cpp driver, into $(OUT)/box2d_bench.  Variables: SRC (the unpacked sdist),
# OUT, CXX, CXXFLAGS, LDFLAGS.  box2d-shim/Python.h stands in for the one header of Python
# that Box2D includes (for b2Assert).
HERE := $(dir $(lastword $(MAKEFILE_LIST)))
LIB_SRCS := $(shell find $(SRC)/Box2D -name '*.cpp' | sort)
OBJS := $(patsubst $(SRC)/%.cpp,$(OUT)/obj/%.o,$(LIB_SRCS))

$(OUT)/box2d_bench: $(OUT)/obj/box2d_bench.o $(OUT)/libBox2D.a
	$(CXX) $(CXXFLAGS) $(LDFLAGS) -o $@ $^ -lm

$(OUT)/libBox2D.a: $(OBJS)
	rm -f $@ && ar rcs $@ $^

$(OUT)/obj/%.o: $(SRC)/%.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -I$(HERE)box2d-shim -I$(SRC) -c -o $@ $<

$(OUT)/obj/box2d_bench.o: $(HERE)box2d_bench.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -I$(HERE)box2d-shim -I$(SRC) -c -o $@ $<

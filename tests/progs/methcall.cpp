// Method calls in the style of the Shootout's methcall: a Toggle and an NthToggle flipped
// through virtual calls in a loop of main, entered once. Prints the final states, the same
// with and without the agent. Usage: methcall [n].
#include <cstdio>
#include <cstdlib>

class Toggle {
  protected:
    bool state;

  public:
    explicit Toggle(bool s) : state(s) {}
    virtual ~Toggle() {}
    virtual bool value() const { return state; }
    virtual Toggle *activate() {
        state = !state;
        return this;
    }
};

class NthToggle : public Toggle {
    int max, count;

  public:
    NthToggle(bool s, int m) : Toggle(s), max(m), count(0) {}
    Toggle *activate() override {
        if (++count >= max) {
            state = !state;
            count = 0;
        }
        return this;
    }
};

int main(int argc, char **argv) {
    long n = argc > 1 ? std::atol(argv[1]) : 100000000;
    Toggle *toggle = new Toggle(true);
    bool v = true;
    for (long i = 0; i < n; i++)
        v = toggle->activate()->value();
    std::printf("%s\n", v ? "true" : "false");
    delete toggle;
    Toggle *nth = new NthToggle(true, 3);
    for (long i = 0; i < n; i++)
        v = nth->activate()->value();
    std::printf("%s\n", v ? "true" : "false");
    delete nth;
    return 0;
}

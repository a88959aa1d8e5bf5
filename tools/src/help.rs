//! Help text of the `drti` tool (drti-cc's is in the instrument crate).

/// `drti --help`.
pub const DRTI: &str = "\
drti — inspect decorated binaries and agent dumps

Usage:
  drti inspect [--json] FILE     list the drti-decorated modules of an executable or shared
                                 object: functions, call sites, bitcode size, ABI version
                                 (exit 1: no drti metadata; exit 2: unreadable or not ELF)
  drti report [--svg OUT] [--html OUT] DUMP
                                 readable table of a DRTI_DUMP file: edges hottest first,
                                 compiles and patches; --svg also draws the hot call graph
                                 (nodes = functions, width = calls, colour = state);
                                 --html writes the graph and the table as one page
  drti cache stats|verify|clear [--dir DIR]
                                 the persistent code cache (DRTI_CACHE_DIR, else
                                 $XDG_CACHE_HOME/drti or ~/.cache/drti): entries and size,
                                 check every entry (damaged ones are removed; exit 1), or
                                 remove every entry
  drti --version | --help

Agent environment (LD_PRELOAD=libdrti_agent.so ./app):
  DRTI_HOT_THRESHOLD=N  calls on one (site, target) edge before it is compiled (1 = first sight);
                        unset, 10000 is only the minimum evidence and a compile must also
                        pay back (calls/s x saving vs compile CPU)
  DRTI_JIT_BUDGET=S     JIT CPU as a share of the process's CPU after a 1 s allowance (0.25; 0 = unlimited)
  DRTI_JIT_NICE=N       added to the program's nice value for the agent thread and the
                        compiler process it starts, 0-19 (10)
  DRTI_JIT_SERVER=PATH  compile in a running `drti-jitd --listen PATH` (same user only)
                        instead of a private compiler process started on demand
  DRTI_CACHE=0|1        0 = no persistent code cache (1)
  DRTI_CACHE_DIR=DIR    the code cache (absolute; $XDG_CACHE_HOME/drti, else ~/.cache/drti)
  DRTI_CACHE_MAX_MB=N   cache size bound; least recently used entries go first (256)
  DRTI_WARM=0|1         1 = compile at start-up what earlier runs of the same modules
                        inlined (edges kept in the cache directory) (0)
  DRTI_LOG=FILTER       tracing filter, e.g. info or drti_agent::jit=debug (warn)
  DRTI_LOG_FILE=PATH    write the log there instead of stderr
  DRTI_DUMP=PATH        write the JSON dump there at exit
  DRTI_JIT=0|1          0 = profile only, never compile or patch (1)
  DRTI_MAX_TARGETS=N    hot targets inlined per site (4)
  DRTI_PERF_MAP=0|1     1 = append JIT'd symbols to /tmp/perf-<pid>.map (0)
  DRTI_DISABLE=0|1      1 = the agent does nothing at all (0)
A malformed value (one that is not valid UTF-8 included) is one warning naming the
variable, and the default is used.
";

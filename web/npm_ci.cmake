# Installs web/node_modules exactly as web/package-lock.json says (`npm ci`), run at build time by
# web/CMakeLists.txt:  cmake -DNPM=... -DWEB_DIR=... -DSTAMP=... -P npm_ci.cmake
# Two builds (two build directories) may get here at once: the caller holds a lock (flock) and we
# skip the install when another build has just done it.
if(EXISTS "${STAMP}" AND "${STAMP}" IS_NEWER_THAN "${WEB_DIR}/package-lock.json"
   AND "${STAMP}" IS_NEWER_THAN "${WEB_DIR}/package.json")
  return()  # up to date (installed by a concurrent build, or by hand)
endif()
if(NOT NPM OR NOT EXISTS "${NPM}")
  message(FATAL_ERROR
    "npm was not found, but the dashboard (web/) needs it once to install its pinned "
    "dependencies (uPlot) from web/package-lock.json into web/node_modules.\n"
    "Install Node.js and npm (Debian: apt-get install nodejs npm, or scripts/install-deps.sh), "
    "re-run cmake, and build again.")
endif()
message(STATUS "web: ${NPM} ci --no-audit --no-fund (in ${WEB_DIR})")
execute_process(COMMAND "${NPM}" ci --no-audit --no-fund
                WORKING_DIRECTORY "${WEB_DIR}"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "web: `npm ci` failed (${rc}) in ${WEB_DIR}: see npm's messages above. "
                      "It needs the npm registry once; afterwards web/node_modules is reused.")
endif()
if(NOT EXISTS "${WEB_DIR}/node_modules/uplot/dist/uPlot.iife.min.js")
  message(FATAL_ERROR "web: `npm ci` succeeded but node_modules/uplot/dist/uPlot.iife.min.js is missing")
endif()
file(TOUCH "${STAMP}")

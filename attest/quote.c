/* placeholder, replaced below */
#include "attest/attest.h"

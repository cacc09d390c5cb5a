/* ntddk.h - for pywsk, everything a WSK client needs from ntddk.h is in wdm.h. */
#include "wdm.h"

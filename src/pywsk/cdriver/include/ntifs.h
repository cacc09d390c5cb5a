/* ntifs.h - for pywsk, everything a WSK client needs from ntifs.h is in wdm.h. */
#include "ntddk.h"

#define JVERSION "mozjpeg-sys vendor (bench-real)"
#define JCOPYRIGHT "Copyright (C)  The libjpeg-turbo Project, Mozilla, and many others"
#define JCOPYRIGHT_SHORT JCOPYRIGHT

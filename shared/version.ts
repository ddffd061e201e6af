/** The release this build is; a test keeps it equal to package.json's version. */
export const OUTPOST_VERSION = '0.1.0';

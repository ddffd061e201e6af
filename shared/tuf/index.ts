/**
 * TUF and director signing for Outpost, over @tufjs/models (the device verifies with tuf-js).
 *
 * Keys (keys.ts)
 *   generateKey(): SigningKey                      Ed25519; `.keyId` = sha256(canonical JSON of the public key)
 *   SigningKey.publicJson / .tufKey() / .signHex(bytes) / .signer()   (the private half never serialises)
 *   writeKeyFile(path, key, {overwrite?})          0600 from creation, temp + fsync + link/rename; never logs
 *   readKeyFile(path), writePublicKeyFile(path, key), readPublicKeyFile(path), keyIdOf(pub), verifyHex(pub, data, sig)
 *
 * Metadata (metadata.ts)
 *   ROLE_NAMES = root, targets, snapshot, timestamp, director   (root also carries the director's keys,
 *                                                                 so rotating root rotates the director)
 *   buildRoot({version, expires, roles: {role: {keys, threshold}}})   unsigned; k-of-n per role
 *   signMetadata(md, keys)                         adds signatures; returns md
 *   rotateRoot(prev, {roles?, expires?}, signers)  v+1 signed by old AND new threshold (throws otherwise)
 *   countValidSignatures(root, role, md), roleKeysFromRoot(root, role)
 *   targetFile(path, {length, sha256}, custom?), buildTargets({version, expires, targets})
 *   buildSnapshot({version, expires, targets}), buildTimestamp({version, expires, snapshot})  (length + sha256 of the bytes)
 *   metadataBytes(md)                              the exact bytes to serve; parseRoot/Targets/Snapshot/Timestamp(bytes)
 *   tufTime(date), expiresIn(days, from?), DEFAULT_EXPIRY_DAYS
 *
 * Bundles as targets (bundle-targets.ts)
 *   bundleTargetsFromDir(dir) → {manifest, targets: [manifestTarget, modelTarget], sources}
 *     paths `<name>/<version>/outpost.bundle.json` and `<name>/<version>/<model file>`;
 *     custom = {kind: 'manifest'|'model', name, version, releaseCounter, arch, minAgentVersion}
 *   directorTargetsForBundle(targets.signed, name, version), directorTargetOf(targetFile)
 *
 * Repository on disk (repository.ts)
 *   new TufRepository(dir)  metadata/ (N.root.json, N.targets.json, N.snapshot.json, timestamp.json, + latest
 *                           unversioned copies) and targets/<dir>/<sha256>.<name>; every write atomic
 *   .init(signedRoot, {targets, snapshot, timestamp}), .load(), .root/.targets/.snapshot/.timestamp
 *   .publishBundle(dir, signers), .addTargets(files, sources, signers), .removeTargets(paths, signers)
 *   .resignSnapshot(signers), .refreshTimestamp(signers), .writeRoot(md) (after rotateRoot)
 *   assertSafeTargetPath(path), targetUrlPath(target), writeFileAtomic(path, bytes),
 *   writeFilesAtomic(dir, [[name, bytes], …]) (one directory fsync for several files)
 *
 * Director (director.ts)
 *   document = {signed: {deviceId, version, expires, issuedAt?, targets: [{name, length, hashes: {sha256}, custom}]},
 *               signatures: [{keyid, sig}]}   sig = Ed25519 over canonical JSON of `signed`, hex
 *   issuedAt (filled by signDirectorDocument when absent) is a signed lower bound for the device clock
 *   signDirectorDocument(signed, keys), verifyDirectorDocument(doc, {keys, threshold}, {deviceId, now, minVersion?})
 *   director trust comes from the trusted root: roleKeysFromRoot(root, 'director')
 */
export * from './bundle-targets.ts';
export * from './director.ts';
export * from './keys.ts';
export * from './metadata.ts';
export * from './repository.ts';

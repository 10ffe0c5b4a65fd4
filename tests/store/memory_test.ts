import { MemoryLeaseStore } from "../../lib/store/memory.ts";
import { leaseStoreContract, metaStoreContract } from "./contract.ts";

leaseStoreContract("MemoryLeaseStore", () => new MemoryLeaseStore());
metaStoreContract("MemoryLeaseStore", () => new MemoryLeaseStore());
